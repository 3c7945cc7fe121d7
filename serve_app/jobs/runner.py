"""The runner: owns the jobs this ingress replica is running, from the queue to the stored video.

For each live job: hand it to the dispatcher, follow its progress, retry it when its generator replica
dies (up to `max_attempts`), store the MP4, then the final record, then release its waiters. Every
unfinished job's record carries a heartbeat, so another replica can adopt it if this one dies
(recovery.py calls `adopt`). A job is marked completed only after its video object exists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from serve_app.contracts import GenerationParams, StartedEvent, VideoResult
from serve_app.jobs.dispatch import Dispatcher
from serve_app.jobs.errors import JobCancelled, replica_lost
from serve_app.jobs.records import JobRecord, JobStatus
from serve_app.jobs.store import JobStore
from serve_app.settings import ReliabilitySettings

logger = logging.getLogger(__name__)

PROGRESS_SAVE_INTERVAL_S = 1.0
GENERATION_SHARE = 90  # progress 0-90 is the generator's, 90-100 storing the video


@dataclass
class LiveJob:
    """A job this replica is running: the record, its full parameters, and what orders its writes."""

    job: JobRecord
    params: GenerationParams
    accepted: float = field(default_factory=time.time)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_save: float = 0.0
    finishing: bool = False  # finish() has begun (a cancel's or the run's own): it runs once
    final_saved: bool = False  # finish() stored the last state: a write spawned earlier must not follow it


class JobRunner:
    def __init__(self, store: JobStore, dispatcher: Dispatcher, reliability: ReliabilitySettings, owner: str,
                 ttl_s: int | None = None, on_finished: Callable[[JobRecord], None] | None = None):
        self.store = store
        self.dispatcher = dispatcher
        self.reliability = reliability
        self.owner = owner
        self.ttl_s = ttl_s
        self.on_finished = on_finished
        self.live: dict[str, LiveJob] = {}
        self.draining = False
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- starting ----------------------------------------------------------------------------------
    def start(self, job: JobRecord, params: GenerationParams, accepted: float | None = None) -> LiveJob:
        """Run a job whose record (and image) are stored."""
        live = LiveJob(job, params, accepted=accepted or time.time())
        self.live[job.id] = live
        self.spawn(self._run(live))
        return live

    async def adopt(self, job: JobRecord, interruptions: int) -> None:
        """Take over an orphaned job whose lease number `interruptions` is ours: finish it if its video exists,
        fail it if it was interrupted `max_attempts` times, else run it again here."""
        logger.warning("adopting job %s (owner %s silent; interrupted %d times, %d attempts so far)", job.id,
                       job.owner, interruptions, job.attempts)
        job.owner, job.heartbeat_at = self.owner, time.time()
        job.attempts = max(job.attempts, interruptions)  # an owner that died may not have saved its attempt
        now = time.time()
        image = await self.store.load_input(job.input_key) if job.input_key else None
        live = LiveJob(job, job.params.model_copy(update={"image_png": image}))
        self.live[job.id] = live
        if await self.store.video_exists(job):
            job.complete(self.store.layout.video(job), now, self.ttl_s)
        elif job.attempts >= self.reliability.max_attempts:
            job.fail("lost", f"the job was interrupted {job.attempts} times; giving up", now)
        elif job.input_key and image is None:
            job.fail("lost", "the job's reference image is gone from storage", now)
        else:
            job.requeue()
            await self.save(live)
            self.spawn(self._run(live))
            return
        await self.finish(live)

    # --- running -----------------------------------------------------------------------------------
    async def _run(self, live: LiveJob) -> None:
        job = live.job
        try:
            while True:
                job.attempts += 1
                try:
                    video = await self.dispatcher.run(job.id, live.params, lambda e: self._started(live, e),
                                                      lambda step, total: self._progress(live, step, total))
                except JobCancelled:
                    raise
                except Exception as exc:  # noqa: BLE001 - sorted below: retry, or the job's failure
                    if job.status.terminal:
                        return  # cancelled while it was at the generator; its cancel finishes it
                    if replica_lost(exc) and job.attempts < self.reliability.max_attempts:
                        logger.warning("job %s: generator replica lost (%s); retrying, attempt %d of %d", job.id,
                                       type(exc).__name__, job.attempts + 1, self.reliability.max_attempts)
                        job.requeue()
                        self.spawn(self.save(live))
                        continue
                    raise
                break
            if job.status.terminal:
                return  # cancelled while it was at the generator; its cancel finishes it
            await self._store_video(live, video)
        except JobCancelled:
            if not job.status.terminal:
                job.fail("cancelled", "cancelled before it started", time.time())
        except Exception as exc:  # noqa: BLE001 - every failure must end in a stored, readable state
            logger.warning("job %s failed: %s", job.id, exc, exc_info=not isinstance(exc, ValueError))
            message = (f"the generator replica was lost {job.attempts} times; giving up" if replica_lost(exc)
                       else _error_message(exc))
            job.fail(_error_code(exc), message, time.time())
        finally:
            if not live.done.is_set():
                await self.finish(live)

    def _started(self, live: LiveJob, event: StartedEvent) -> None:
        job = live.job
        if live.done.is_set() or job.status.terminal:
            return
        job.start(event.at)
        job.metrics.queue_sec = round(max(0.0, event.at - live.accepted), 3)
        job.metrics.replica, job.metrics.node = event.replica or None, event.node or None
        job.metrics.generation_started_at = round(event.at, 3)
        self.spawn(self.save(live))  # ordered by the job's lock; no storage write on the critical path

    def _progress(self, live: LiveJob, step: int, total: int) -> None:
        job = live.job
        if live.done.is_set() or job.status.terminal:
            return
        job.progress = max(job.progress, min(GENERATION_SHARE - 1, GENERATION_SHARE * step // max(total, 1)))
        if time.monotonic() - live.last_save >= PROGRESS_SAVE_INTERVAL_S:
            live.last_save = time.monotonic()
            self.spawn(self.save(live))

    async def _store_video(self, live: LiveJob, video: VideoResult) -> None:
        job = live.job
        job.progress = GENERATION_SHARE
        job.metrics.generation_ended_at = round(time.time(), 3)
        started = time.perf_counter()
        key = await self.store.save_video_bytes(job, video.mp4)
        p = job.params
        job.metrics = job.metrics.model_copy(update=dict(
            generated_size=f"{p.width}x{p.height}",
            requested_num_frames=p.requested_num_frames if p.requested_num_frames != p.num_frames else None,
            generation_sec=round(video.generation_sec, 3), encode_sec=round(video.encode_sec, 3),
            store_sec=round(time.perf_counter() - started, 3), total_sec=round(time.time() - live.accepted, 3),
            peak_vram_gb=video.peak_vram_gb, batch_size=video.batch_size, video_bytes=len(video.mp4),
            stages=video.stages,
        ))
        job.params = job.params.model_copy(update={"seed": video.seed})
        job.complete(key, time.time(), self.ttl_s)

    # --- finishing ---------------------------------------------------------------------------------
    async def finish(self, live: LiveJob) -> None:
        """Store the final state (retrying through storage outages), then release waiters and the slot."""
        if live.finishing:
            return
        live.finishing = True
        job = live.job
        try:
            await self.save(live, final=True)
            await self.store.clear_leases(job.id)
            await self.store.clear_active(job.id)  # last: while it stands, recovery finishes the clean-up
        except Exception:  # noqa: BLE001 - the active marker stays; recovery finishes the record later
            logger.exception("job %s: could not store its final state; recovery will", job.id)
        finally:
            live.done.set()
            self.live.pop(job.id, None)
        if self.on_finished is not None:
            self.on_finished(job)

    async def cancel_queued(self, job_id: str) -> JobRecord | None:
        """Cancel a queued job of ours; its record as it ends (None: not ours, or no longer queued)."""
        live = self.live.get(job_id)
        if live is None or live.job.status != JobStatus.queued:
            return None
        self.dispatcher.cancel(job_id)  # out of the queue; one already sent is discarded when it returns
        if not live.job.status.terminal:
            live.job.fail("cancelled", "cancelled before it started", time.time())
            await self.finish(live)
        return live.job.model_copy(deep=True)

    async def save(self, live: LiveJob, final: bool = False) -> None:
        """Write the job's record; writes are ordered by its lock, and none follows the final one (a heartbeat
        or progress write spawned before the job ended would otherwise bring back a record deleted since)."""
        async with live.lock:
            if live.final_saved:
                return
            live.last_save = time.monotonic()
            live.job.heartbeat_at = time.time()
            await self.store.save(live.job.model_copy(deep=True))
            live.final_saved = final

    # --- background and shutdown -------------------------------------------------------------------
    async def keep_alive(self) -> None:
        """Refresh the heartbeat of every running job, so no other replica adopts it."""
        while True:
            await asyncio.sleep(self.reliability.heartbeat_s)
            for live in list(self.live.values()):
                stale = time.time() - (live.job.heartbeat_at or 0) >= self.reliability.heartbeat_s
                if stale and not live.job.status.terminal:
                    self.spawn(self.save(live))

    async def drain(self, timeout_s: float) -> int:
        """Stop taking jobs and wait for running ones; returns how many were left (recovery reruns them)."""
        self.draining = True
        waiting = [asyncio.ensure_future(live.done.wait()) for live in self.live.values()]
        if waiting:
            await asyncio.wait(waiting, timeout=timeout_s)
        left = list(self.live.values())
        for live in left:  # make them stale at once, so the next replica adopts them without waiting
            live.job.heartbeat_at = 0.0
            try:
                await self.store.save(live.job.model_copy(deep=True))
            except Exception:  # noqa: BLE001
                logger.exception("job %s: could not hand over", live.job.id)
        return len(left)


def _error_code(exc: Exception) -> str:
    from serve_app.contracts import JobTimedOut, OutOfMemory
    from serve_app.storage import StorageError

    if isinstance(exc, StorageError):
        return "storage_failed"
    if isinstance(exc, JobTimedOut):
        return "timeout"
    if isinstance(exc, OutOfMemory):
        return "out_of_memory"
    if isinstance(exc, ValueError):
        return "invalid_input"
    return "generation_failed"


def _error_message(exc: Exception) -> str:
    text = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (text[-1] if text and "Traceback" in text[0] else text[0] if text else type(exc).__name__)[:500]
