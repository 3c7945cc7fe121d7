"""The generator replica survives what a job does to it (tiny model, real diffusers backend, CPU): running out of
memory fails that job with a reason, and a job stopped by its time limit stops at its next step and frees the
device; in both cases the next job runs on the same replica."""

import asyncio

import pytest

from serve_app.backends.diffusers import DiffusersBackend
from serve_app.contracts import GenerationParams, OutOfMemory, ProgressEvent, ResultEvent
from serve_app.deployments.generator import Generator
from serve_app.settings import Settings


def params(prompt="x", steps=2, size=64):
    return GenerationParams(prompt=prompt, width=size, height=size, num_frames=5, fps=8, num_inference_steps=steps,
                            guidance_scale=1.0, seed=1)


@pytest.fixture
def replica(tmp_path, tiny_model_root):
    settings = Settings(model="tiny", tiny_model_dir=tiny_model_root, storage_url=f"file://{tmp_path}",
                        warmup=False, selfcheck=False).resolve(gpus=0)
    replica = Generator.func_or_class(settings)
    deadline = asyncio.run(asyncio.wait_for(asyncio.to_thread(replica._settled.wait, 120), 130))
    assert deadline and replica.status().state == "ready"
    return replica


async def collect(replica, batch):
    return [event async for event in replica.generate(batch)]


def test_out_of_memory_fails_the_job_and_the_replica_keeps_serving(replica, monkeypatch):
    real = DiffusersBackend.render

    def render(self, batch, on_progress):
        if batch[0].prompt == "too big":
            import torch

            torch.empty(2**44, dtype=torch.uint8)  # a real allocation failure: 16 TB
        return real(self, batch, on_progress)

    monkeypatch.setattr(DiffusersBackend, "render", render)
    with pytest.raises(OutOfMemory, match=r"out of memory generating 64x64x5 .*max_pixel_frames"):
        asyncio.run(collect(replica, [params("too big")]))
    assert replica.status().state == "ready" and not replica.status().busy
    events = asyncio.run(collect(replica, [params("fits")]))
    assert isinstance(events[-1], ResultEvent) and events[-1].videos[0].size == (5, 64, 64)


def test_a_stopped_job_stops_at_its_next_step_and_frees_the_device(replica):
    async def scenario():
        seen = []

        async def consume():
            async for event in replica.generate([params("long", steps=200, size=128)]):
                seen.append(event)

        task = asyncio.create_task(consume())
        while not any(isinstance(e, ProgressEvent) for e in seen):
            await asyncio.sleep(0.02)
        task.cancel()  # what the ingress's time limit does to the stream
        with pytest.raises(asyncio.CancelledError):
            await task
        busy_after_cancel = replica.status().busy  # the lock is released only once the thread has stopped
        after = await collect(replica, [params("next")])
        return seen, busy_after_cancel, after

    seen, busy_after_cancel, after = asyncio.run(scenario())
    steps = [e.step for e in seen if isinstance(e, ProgressEvent)]
    assert steps and max(steps) < 200  # stopped early, not run to the end
    assert not busy_after_cancel
    assert isinstance(after[-1], ResultEvent) and replica.status().state == "ready"
