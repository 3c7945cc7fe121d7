import asyncio

import numpy as np

from serve_app.contracts import GenerationParams, ProgressEvent, ResultEvent, VideoResult
from serve_app.jobs.batching import group_compatible
from serve_app.jobs.dispatch import BatchConfig, Dispatcher
from serve_app.media.video import encode_mp4_bytes


def params(i, **kw):
    base = dict(prompt=f"p{i}", width=64, height=64, num_frames=9, fps=8, num_inference_steps=2,
                guidance_scale=1.0, seed=i)
    return GenerationParams(**{**base, **kw})


def test_grouping_by_shape_steps_guidance_and_image():
    items = [params(0), params(1, width=96), params(2), params(3, num_frames=13), params(4, image_png=b"x"),
             params(5, num_inference_steps=3), params(6, guidance_scale=5.0), params(7, seed=99, prompt="other")]
    assert group_compatible(items) == [[0, 2, 7], [1], [3], [4], [5], [6]]


def test_grouping_keeps_arrival_order():
    items = [params(i, width=64 if i % 2 else 96) for i in range(6)]
    assert group_compatible(items) == [[0, 2, 4], [1, 3, 5]]


class RecordingGenerator:
    """Answers each call with MP4s that encode the seed; fails for width 128. Records batch sizes."""

    def __init__(self):
        self.calls = []

    async def stream(self, batch):
        self.calls.append([p.seed for p in batch])
        if batch[0].width == 128:
            raise RuntimeError("boom")
        yield ProgressEvent(step=1, total=1)
        videos = []
        for p in batch:
            frames = np.full((p.num_frames, p.height, p.width, 3), p.seed % 255, np.uint8)
            videos.append(VideoResult(mp4=encode_mp4_bytes(frames, p.fps, pixel_format="rgb24"),
                                      num_frames=p.num_frames, height=p.height, width=p.width, seed=p.seed,
                                      generation_sec=0.0, batch_size=len(batch)))
        yield ResultEvent(videos=videos)

    async def statuses(self, timeout_s):
        raise NotImplementedError


def test_dispatch_gives_one_outcome_per_job_in_compatible_batches():
    gen = RecordingGenerator()

    async def run_all():
        dispatcher = Dispatcher(gen, BatchConfig(max_batch_size=4, batch_wait_timeout_s=0.0))
        jobs = [params(1), params(2, width=128), params(3), params(4, width=96)]
        outcomes = await asyncio.gather(*(dispatcher.run(f"job{p.seed}", p) for p in jobs), return_exceptions=True)
        await dispatcher.close()
        return outcomes

    outcomes = asyncio.run(run_all())
    assert sorted(gen.calls) == [[1, 3], [2], [4]]
    assert [o.seed for o in (outcomes[0], outcomes[2], outcomes[3])] == [1, 3, 4]
    assert outcomes[0].batch_size == 2 and outcomes[3].batch_size == 1
    assert isinstance(outcomes[1], RuntimeError) and "boom" in str(outcomes[1])
    assert outcomes[3].size == (9, 64, 96)


def test_without_batching_every_free_replica_takes_a_job_at_once():
    """A backend that does not batch: each job is its own trip, sent at once; two replicas run two at a time."""
    from tests.support.fakes import FakeGenerator

    gen = FakeGenerator(delay_s=0.2, replicas=2)

    async def run_all():
        dispatcher = Dispatcher(gen, BatchConfig(max_batch_size=4), batches=False)
        starts = {}
        jobs = [params(i) for i in range(4)]
        videos = await asyncio.gather(*(dispatcher.run(f"j{p.seed}", p, on_started=lambda e, i=p.seed: starts.setdefault(
            i, e.at)) for p in jobs))
        return videos, starts

    videos, starts = asyncio.run(run_all())
    assert [v.batch_size for v in videos] == [1, 1, 1, 1]
    first, second = sorted(starts.values())[:2], sorted(starts.values())[2:]
    assert first[1] - first[0] < 0.1 and second[0] - first[0] >= 0.15  # two at once, then the next two


def test_a_job_sent_but_not_yet_taken_can_be_cancelled():
    from serve_app.jobs.errors import JobCancelled
    from tests.support.fakes import FakeGenerator

    gen = FakeGenerator(delay_s=0.3, replicas=1)

    async def scenario():
        dispatcher = Dispatcher(gen, BatchConfig(), batches=False)
        running = asyncio.ensure_future(dispatcher.run("a", params(1)))
        waiting = asyncio.ensure_future(dispatcher.run("b", params(2)))
        await asyncio.sleep(0.05)
        assert dispatcher.waiting == 1 and dispatcher.generating == 1  # b was sent; the replica has a
        assert dispatcher.cancel("b") and not dispatcher.cancel("a")
        done = await running
        try:
            await waiting
        except JobCancelled:
            return done, True
        return done, False

    done, cancelled = asyncio.run(scenario())
    assert done.seed == 1 and cancelled and gen.batches == [[1]]  # b never reached a replica
