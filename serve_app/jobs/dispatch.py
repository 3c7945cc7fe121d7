"""The dispatcher: the queue between accepted jobs and the generator replicas, and the batcher.

The runner hands it one job at a time (`run`) and gets back that job's `VideoResult`. Jobs leave in trips
(one call to the generator deployment). Each generator replica takes one trip at a time, and Serve's router
holds the trips no replica has taken yet, handing each to the first replica that frees up. So:
- a backend that does not batch (FastVideo: one forward pass per video) gets every job as its own trip at
  once: N replicas run N jobs, each starts the moment a replica is free, and Serve's autoscaler sees the
  whole queue;
- a backend that batches (diffusers) gets compatible jobs (`batch_key`) together, up to `max_batch_size`:
  jobs wait here, and the next trip is formed only once every trip sent has been taken by a replica, so the
  jobs that arrive meanwhile join it, and a free replica always has a trip waiting for it. A trip may wait
  up to `batch_wait_timeout_s` after its first job arrived for more to join (0: an idle service adds no
  wait). Both values are live (`configure`), from the Ingress `user_config`.
A trip still generating `job_timeout_s` (per job in it) after a replica took it is stopped: its call is
cancelled, which the replica turns into an abort, and its jobs fail `timeout`.
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
    JobTimedOut,
    ProgressEvent,
    ResultEvent,
    StartedEvent,
    VideoResult,
)
from serve_app.jobs.batching import group_compatible
from serve_app.jobs.errors import JobCancelled


class GeneratorClient(Protocol):
    """How the job core reaches the generator replicas (a Serve handle in production, anything in tests)."""

    def stream(self, batch: list[GenerationParams]) -> AsyncIterator[GeneratorEvent]: ...

    async def statuses(self, timeout_s: float) -> dict[str, GeneratorStatus]: ...


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


@dataclass(eq=False)
class Trip:
    items: list[WorkItem]
    started: bool = False
    task: asyncio.Task | None = None


class Dispatcher:
    def __init__(self, generator: GeneratorClient, config: BatchConfig | None = None, batches: bool = True,
                 job_timeout_s: float | None = None):
        self.generator = generator
        self.config = config or BatchConfig()
        self.batches = batches
        self.job_timeout_s = job_timeout_s
        self.queue: list[WorkItem] = []
        self.trips: set[Trip] = set()
        self._wake: asyncio.Event | None = None
        self._pump_task: asyncio.Task | None = None

    def configure(self, config: BatchConfig) -> None:
        self.config = config
        if self._wake is not None:
            self._wake.set()

    @property
    def waiting(self) -> int:
        """Jobs no replica has taken yet (here, or sent and held by Serve's router)."""
        return len(self.queue) + sum(len(t.items) for t in self.trips if not t.started)

    @property
    def generating(self) -> int:
        return sum(len(t.items) for t in self.trips if t.started)

    async def run(self, job_id: str, params: GenerationParams, on_started: Callable[[StartedEvent], None] = _ignore,
                  on_progress: Callable[[int, int], None] = _ignore) -> VideoResult:
        """Queue one job and wait for its video. Raises JobCancelled if `cancel` took it back in time."""
        item = WorkItem(job_id, params, on_started, on_progress)
        self.queue.append(item)
        self._ensure_pump().set()
        return await item.future

    def cancel(self, job_id: str) -> bool:
        """Take a job back before a replica starts it (True); False once a replica has it."""
        for item in self.queue:
            if item.job_id == job_id:
                self.queue.remove(item)
                item.future.set_exception(JobCancelled(job_id))
                return True
        for trip in self.trips:
            item = next((i for i in trip.items if i.job_id == job_id), None)
            if item is not None and not trip.started:
                if not item.future.done():
                    item.future.set_exception(JobCancelled(job_id))
                if all(i.future.done() for i in trip.items):
                    trip.task.cancel()  # nobody waits for this trip any more: withdraw the call
                return True
        return False

    async def close(self) -> None:
        for task in [self._pump_task, *(t.task for t in self.trips)]:
            if task is not None:
                task.cancel()

    # --- the pump ----------------------------------------------------------------------------------
    def _ensure_pump(self) -> asyncio.Event:
        if self._pump_task is None or self._pump_task.done():
            self._wake = asyncio.Event()
            self._pump_task = asyncio.create_task(self._pump())
        return self._wake

    def _may_send(self) -> bool:
        return not self.batches or all(trip.started for trip in self.trips)

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue and self._may_send():
                items = await self._next_batch() if self.batches else [self.queue.pop(0)]
                if items:
                    trip = Trip(items)
                    self.trips.add(trip)
                    trip.task = asyncio.create_task(self._send(trip))

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

    async def _send(self, trip: Trip) -> None:
        """One trip: stream it to a generator replica, report its events, settle each job's future."""
        batch = trip.items
        stream = self.generator.stream([item.params for item in batch])
        try:
            first = await stream.__anext__()  # waits, unlimited, until a replica takes the trip
            trip.started = True
            self._wake.set()  # the next trip may be formed now
            started = first if isinstance(first, StartedEvent) else StartedEvent(at=time.time())
            for item in batch:
                item.on_started(started)
            limit = self.job_timeout_s * len(batch) if self.job_timeout_s else None
            try:
                videos = await asyncio.wait_for(self._follow(stream, batch, first), limit)
            except (asyncio.TimeoutError, TimeoutError):
                raise JobTimedOut(f"the job was still generating after {limit:g} s, its time limit (setting "
                                  "job_timeout_s), and was stopped; ask for a smaller size or fewer frames") from None
            if videos is None or len(videos) != len(batch):
                raise RuntimeError(f"the generator returned {0 if videos is None else len(videos)} videos "
                                   f"for {len(batch)} requests")
            for item, video in zip(batch, videos):
                if not item.future.done():
                    item.future.set_result(video)
        except Exception as exc:  # noqa: BLE001 - every job of the trip gets the error
            if isinstance(exc, StopAsyncIteration):
                exc = RuntimeError("the generator closed its stream without a video")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        finally:
            await stream.aclose()  # withdraws the call if it is still queued or running (a cancel, a timeout)
            self.trips.discard(trip)
            self._wake.set()

    @staticmethod
    async def _follow(stream, batch: list[WorkItem], event) -> list[VideoResult] | None:
        """Report events until the result; returns its videos."""
        while True:
            if isinstance(event, ProgressEvent):
                for item in batch:
                    item.on_progress(event.step, event.total)
            elif isinstance(event, ResultEvent):
                return event.videos
            try:
                event = await stream.__anext__()
            except StopAsyncIteration:
                return None
