import asyncio

import numpy as np

from serve_app.backends.base import GeneratedVideo, GenerationParams, ProgressEvent, ResultEvent
from serve_app.jobs.batching import WorkItem, group_compatible
from serve_app.jobs.service import JobService
from serve_app.jobs.store import JobStore
from serve_app.settings import Settings
from serve_app.storage.local import LocalStorage


def item(i, **kw):
    base = dict(prompt=f"p{i}", width=64, height=64, num_frames=9, fps=8, num_inference_steps=2,
                guidance_scale=1.0, seed=i)
    return WorkItem(job_id=f"job{i}", params=GenerationParams(**{**base, **kw}))


def test_grouping_by_shape_steps_guidance_and_image():
    items = [item(0), item(1, width=96), item(2), item(3, num_frames=13), item(4, image_png=b"x"),
             item(5, num_inference_steps=3), item(6, guidance_scale=5.0), item(7, seed=99, prompt="other")]
    assert group_compatible(items) == [[0, 2, 7], [1], [3], [4], [5], [6]]


def test_grouping_keeps_arrival_order():
    items = [item(i, width=64 if i % 2 else 96) for i in range(6)]
    assert group_compatible(items) == [[0, 2, 4], [1, 3, 5]]


class RecordingGenerator:
    """Answers each call with frames that encode the seed; fails for width 128. Records batch sizes."""

    def __init__(self):
        self.calls = []

    async def stream(self, batch):
        self.calls.append([p.seed for p in batch])
        if batch[0].width == 128:
            raise RuntimeError("boom")
        yield ProgressEvent(step=1, total=1)
        yield ResultEvent(videos=[
            GeneratedVideo(frames=np.full((p.num_frames, p.height, p.width, 3), p.seed % 255, np.uint8),
                           seed=p.seed, generation_sec=0.0, batch_size=len(batch), pixel_format="rgb24")
            for p in batch])

    async def status(self, timeout_s):
        raise NotImplementedError


def test_run_batch_returns_one_outcome_per_item_in_order(tmp_path):
    gen = RecordingGenerator()
    service = JobService(Settings(), JobStore(LocalStorage(tmp_path)), gen)
    items = [item(1), item(2, width=128), item(3), item(4, width=96)]
    outcomes = asyncio.run(service.run_batch(items))
    assert sorted(gen.calls) == [[1, 3], [2], [4]]
    assert [o.seed for o in (outcomes[0], outcomes[2], outcomes[3])] == [1, 3, 4]
    assert outcomes[0].batch_size == 2 and outcomes[3].batch_size == 1
    assert isinstance(outcomes[1], RuntimeError) and "boom" in str(outcomes[1])
    assert outcomes[3].size == (9, 64, 96)
