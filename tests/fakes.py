"""A fake generator for tests about the HTTP layer and the job logic (not about the model)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import numpy as np

from serve_app.backends.base import GeneratedVideo, ProgressEvent, ResultEvent
from serve_app.backends.status import GeneratorStatus
from serve_app.media.video import encode_mp4


class ActorDiedError(RuntimeError):
    """Named like Ray's: what the ingress sees when the generator replica dies under a job."""


class FakeGenerator:
    """Frames whose colour encodes the seed; `fail_prompts` fail; `delay_s` per batch;
    the first `lose_replica` calls die like a killed generator replica."""

    def __init__(self, delay_s: float = 0.0, fail_prompts: tuple[str, ...] = ("please fail",), lose_replica: int = 0,
                 encoded: bool = False):
        self.delay_s = delay_s
        self.encoded = encoded  # send finished MP4s, as the FastVideo backend does when it encodes in its worker
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
        yield ResultEvent(videos=[self._video(p, len(batch)) for p in batch])

    def _video(self, p, batch_size: int) -> GeneratedVideo:
        frames = np.full((p.num_frames, p.height, p.width, 3), p.seed % 256, np.uint8)
        if not self.encoded:
            return GeneratedVideo(frames=frames, seed=p.seed, generation_sec=self.delay_s, batch_size=batch_size,
                                  pixel_format="rgb24")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "v.mp4"
            encode_mp4(frames, p.fps, path, pixel_format="rgb24")
            mp4 = path.read_bytes()
        return GeneratedVideo(mp4=mp4, shape=(p.num_frames, p.height, p.width), seed=p.seed,
                              generation_sec=self.delay_s, batch_size=batch_size, stages={"encode_tail": 0.012})

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


class StandInWorkerWrapper:
    """In place of FastVideo's RayWorkerWrapper for the prestart tests (FastVideo is not installed on CPU)."""

    def __init__(self, fastvideo_args, rpc_rank: int = 0):
        self.fastvideo_args, self.rpc_rank = fastvideo_args, rpc_rank

    def get_node_ip(self) -> str:
        return "127.0.0.1"

    def execute_method(self, method: str, *args, **kwargs):
        import os

        return {"method": method, "args": args, "fastvideo_args": self.fastvideo_args, "rpc_rank": self.rpc_rank,
                "pid": os.getpid()}
