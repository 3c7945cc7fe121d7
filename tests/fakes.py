"""A fake generator for tests about the HTTP layer and the job logic (not about the model)."""

from __future__ import annotations

import asyncio

import numpy as np

from serve_app.backends.base import GeneratedVideo, ProgressEvent, ResultEvent
from serve_app.backends.status import GeneratorStatus


class ActorDiedError(RuntimeError):
    """Named like Ray's: what the ingress sees when the generator replica dies under a job."""


class FakeGenerator:
    """Frames whose colour encodes the seed; `fail_prompts` fail; `delay_s` per batch;
    the first `lose_replica` calls die like a killed generator replica."""

    def __init__(self, delay_s: float = 0.0, fail_prompts: tuple[str, ...] = ("please fail",), lose_replica: int = 0):
        self.delay_s = delay_s
        self.fail_prompts = fail_prompts
        self.lose_replica = lose_replica
        self.batches: list[list[int]] = []
        self.state = "ready"

    async def stream(self, batch):
        self.batches.append([p.seed for p in batch])
        for step in range(1, 3):
            await asyncio.sleep(self.delay_s / 2)
            yield ProgressEvent(step=step, total=2)
        if self.lose_replica > 0:
            self.lose_replica -= 1
            raise ActorDiedError("The actor died unexpectedly before finishing this task.")
        if any(p.prompt in self.fail_prompts for p in batch):
            raise RuntimeError("the fake generator was told to fail")
        yield ResultEvent(videos=[
            GeneratedVideo(frames=np.full((p.num_frames, p.height, p.width, 3), p.seed % 256, np.uint8),
                           seed=p.seed, generation_sec=self.delay_s, batch_size=len(batch), pixel_format="rgb24")
            for p in batch])

    async def status(self, timeout_s: float) -> GeneratorStatus:
        if self.state == "hang":
            raise asyncio.TimeoutError()
        return GeneratorStatus(state=self.state, reason=None if self.state == "ready" else "fake says so")


def one_at_a_time(service):
    """Give a test service what the ingress's @serve.batch gives production: one trip at a time, the rest queued."""
    gate = asyncio.Semaphore(1)

    async def generate(item):
        async with gate:
            return await service._generate_one(item)

    service.generate = generate
    return service
