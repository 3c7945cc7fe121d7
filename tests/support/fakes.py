"""A fake generator for tests about the HTTP layer and the job logic (not about the model)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from serve_app.contracts import GeneratorStatus, ProgressEvent, ResultEvent, StartedEvent, VideoResult
from serve_app.media.video import encode_mp4_bytes


class ActorDiedError(RuntimeError):
    """Named like Ray's: what the ingress sees when the generator replica dies under a job."""


class FakeGenerator:
    """MP4s whose colour encodes the seed; `fail_prompts` fail; `delay_s` per batch; `replicas` batches at a
    time, the others wait as Serve's router holds them; the first `lose_replica` calls die like a killed
    generator replica."""

    def __init__(self, delay_s: float = 0.0, fail_prompts: tuple[str, ...] = ("please fail",), lose_replica: int = 0,
                 encoded: bool = False, replicas: int = 1):
        self.replicas = replicas
        self._free: asyncio.Semaphore | None = None
        self.delay_s = delay_s
        self.encoded = encoded  # report an encode overlapped with the decode, as the FastVideo backend does
        self.fail_prompts = fail_prompts
        self.lose_replica = lose_replica
        self.batches: list[list[int]] = []
        self.state = "ready"

    async def stream(self, batch):
        if self._free is None:
            self._free = asyncio.Semaphore(self.replicas)
        async with self._free:
            self.batches.append([p.seed for p in batch])
            yield StartedEvent(replica="fake", at=time.time())
            for step in range(1, 3):
                await asyncio.sleep(self.delay_s / 2)
                yield ProgressEvent(step=step, total=2)
            if self.lose_replica > 0:
                self.lose_replica -= 1
                raise ActorDiedError("The actor died unexpectedly before finishing this task.")
            if any(p.prompt in self.fail_prompts for p in batch):
                raise RuntimeError("the fake generator was told to fail")
            yield ResultEvent(videos=[self._video(p, len(batch)) for p in batch])

    def _video(self, p, batch_size: int) -> VideoResult:
        width, height = p.output_size  # delivered at the size asked, as the backends do
        frames = np.full((p.num_frames, height, width, 3), p.seed % 256, np.uint8)
        start = time.perf_counter()
        mp4 = encode_mp4_bytes(frames, p.fps, pixel_format="rgb24")
        encode_sec = 0.012 if self.encoded else time.perf_counter() - start
        stages = {"encode_tail": 0.012} if self.encoded else {}
        return VideoResult(mp4=mp4, num_frames=p.num_frames, height=height, width=width, seed=p.seed,
                           generation_sec=self.delay_s, encode_sec=encode_sec, batch_size=batch_size, stages=stages)

    async def statuses(self, timeout_s: float) -> dict[str, GeneratorStatus]:
        if self.state == "hang":
            raise asyncio.TimeoutError()
        return {"fake": GeneratorStatus(state=self.state, reason=None if self.state == "ready" else "fake says so")}


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


def record_early_work(path: str, fail: bool = False) -> None:
    """Early work for the prestart tests: notes which process ran it (or fails)."""
    import os
    from pathlib import Path

    if fail:
        raise RuntimeError("early work broke")
    Path(path).write_text(str(os.getpid()))
