"""The dispatcher: the queue between accepted jobs and the generator, and the batcher.

The runner hands it one job at a time (`run`) and gets back that job's `VideoResult`. Queued jobs leave
as batches of compatible shape (`batch_key`), up to `max_batch_size`; a batch may wait up to
`batch_wait_timeout_s` after its first job arrived for more to join (0: an idle service adds no wait;
jobs that arrive while the generator is busy still leave together). `max_in_flight` batches are at the
generator at once. Both batch values are live (`configure`), from the Ingress `user_config`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, Field

from serve_app.contracts import (
    GenerationParams,
    GeneratorEvent,
    GeneratorStatus,
    ProgressEvent,
    ResultEvent,
    StartedEvent,
    VideoResult,
)
from serve_app.jobs.batching import group_compatible
from serve_app.jobs.errors import JobCancelled


class GeneratorClient(Protocol):
    """How the job core reaches the generator (a Serve handle in production, anything in tests)."""

    def stream(self, batch: list[GenerationParams]) -> AsyncIterator[GeneratorEvent]: ...

    async def status(self, timeout_s: float) -> GeneratorStatus: ...


class BatchConfig(BaseModel):
    """The Ingress `user_config` in serve.yaml."""

    max_batch_size: int = Field(4, ge=1, le=64)
    batch_wait_timeout_s: float = Field(0.0, ge=0, le=10)


def _ignore(*_args) -> None:
    return None


@dataclass
class WorkItem:
    """One job waiting for (or at) the generator, with the callbacks that report its progress."""

    job_id: str
    params: GenerationParams
    on_started: Callable[[StartedEvent], None] = _ignore
    on_progress: Callable[[int, int], None] = _ignore
    enqueued: float = field(default_factory=time.monotonic)
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Dispatcher:
    def __init__(self, generator: GeneratorClient, config: BatchConfig | None = None, max_in_flight: int = 1):
        self.generator = generator
        self.config = config or BatchConfig()
        self.max_in_flight = max_in_flight
        self.queue: list[WorkItem] = []
        self.in_flight = 0
        self._wake: asyncio.Event | None = None
        self._pump_task: asyncio.Task | None = None
        self._sends: set[asyncio.Task] = set()

    def configure(self, config: BatchConfig) -> None:
        self.config = config
        if self._wake is not None:
            self._wake.set()

    @property
    def queued(self) -> int:
        return len(self.queue)

    async def run(self, job_id: str, params: GenerationParams, on_started: Callable[[StartedEvent], None] = _ignore,
                  on_progress: Callable[[int, int], None] = _ignore) -> VideoResult:
        """Queue one job and wait for its video. Raises JobCancelled if `cancel` took it out of the queue."""
        item = WorkItem(job_id, params, on_started, on_progress)
        self.queue.append(item)
        self._ensure_pump().set()
        return await item.future

    def cancel(self, job_id: str) -> bool:
        """Take a job out of the queue (True), or say it has already left for the generator (False)."""
        for item in self.queue:
            if item.job_id == job_id:
                self.queue.remove(item)
                item.future.set_exception(JobCancelled(job_id))
                return True
        return False

    async def close(self) -> None:
        for task in [self._pump_task, *self._sends]:
            if task is not None:
                task.cancel()

    # --- the pump ----------------------------------------------------------------------------------
    def _ensure_pump(self) -> asyncio.Event:
        if self._pump_task is None or self._pump_task.done():
            self._wake = asyncio.Event()
            self._pump_task = asyncio.create_task(self._pump())
        return self._wake

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue and self.in_flight < self.max_in_flight:
                batch = await self._next_batch()
                if batch:
                    self.in_flight += 1
                    task = asyncio.create_task(self._send(batch))
                    self._sends.add(task)
                    task.add_done_callback(self._sends.discard)

    async def _next_batch(self) -> list[WorkItem]:
        """The oldest job and the queued jobs that can share its trip, after the batch wait if there is room."""
        while self.queue:
            head = self.queue[0]
            mates = [self.queue[i] for i in group_compatible([item.params for item in self.queue])[0]]
            wait = head.enqueued + self.config.batch_wait_timeout_s - time.monotonic()
            if len(mates) >= self.config.max_batch_size or wait <= 0:
                batch = mates[:self.config.max_batch_size]
                for item in batch:
                    self.queue.remove(item)
                return batch
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except (asyncio.TimeoutError, TimeoutError):
                pass
        return []

    async def _send(self, batch: list[WorkItem]) -> None:
        """One trip: stream the batch to the generator, report its events, settle each job's future."""
        started = False
        try:
            videos = None
            async for event in self.generator.stream([item.params for item in batch]):
                if not started:
                    started = True
                    mark = event if isinstance(event, StartedEvent) else StartedEvent(at=time.time())
                    for item in batch:
                        item.on_started(mark)
                if isinstance(event, ProgressEvent):
                    for item in batch:
                        item.on_progress(event.step, event.total)
                elif isinstance(event, ResultEvent):
                    videos = event.videos
            if videos is None or len(videos) != len(batch):
                raise RuntimeError(f"the generator returned {0 if videos is None else len(videos)} videos "
                                   f"for {len(batch)} requests")
            for item, video in zip(batch, videos):
                if not item.future.done():
                    item.future.set_result(video)
        except Exception as exc:  # noqa: BLE001 - every job of the trip gets the error
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        finally:
            self.in_flight -= 1
            self._wake.set()

