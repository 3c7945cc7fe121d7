"""The job service: accept, run, report. It knows nothing of HTTP or of Ray Serve.

Data path of one job: record stored (queued) -> batched trip to the generator (in_progress, progress
per denoising step) -> MP4 encoded off the event loop -> video stored -> record completed. A job is
marked completed only after its video object exists. A generator replica that dies mid-job costs a
retry (up to `max_attempts`); a job whose ingress died is adopted by another (see recovery.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from serve_app.backends.base import GeneratedVideo, GenerationParams, ProgressEvent, ResultEvent
from serve_app.backends.status import GeneratorStatus
from serve_app.jobs.batching import WorkItem, group_compatible
from serve_app.jobs.records import JobError, JobRecord, JobStatus, new_job_id, video_key
from serve_app.jobs.store import IdempotencyEntry, JobStore
from serve_app.media.video import encode_mp4
from serve_app.settings import Settings

logger = logging.getLogger(__name__)

PROGRESS_SAVE_INTERVAL_S = 1.0
ACK_RETRY_S = 3.0  # storage retries while a client waits for its job to be accepted
GENERATION_SHARE = 90  # progress 0-90 is denoising, 90-100 encoding and storing
REPLICA_LOST = ("ActorDiedError", "RayActorError", "ActorUnavailableError", "ActorUnschedulableError",
                "WorkerCrashedError", "NodeDiedError")


class GeneratorClient(Protocol):
    """How the service reaches the generator (a Serve handle in production, anything in tests)."""

    def stream(self, batch: list[GenerationParams]) -> AsyncIterator[ProgressEvent | ResultEvent]: ...

    async def status(self, timeout_s: float) -> GeneratorStatus: ...


class JobNotFound(LookupError):
    pass


class JobConflict(RuntimeError):
    """The job is not in a state that allows this operation."""


class IdempotencyConflict(JobConflict):
    """The idempotency key was used before with a different request."""


class Saturated(RuntimeError):
    """Too many jobs pending on this replica; `retry_after_s` estimates when a slot frees up."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class JobCancelled(RuntimeError):
    pass


def replica_lost(exc: BaseException) -> bool:
    """The generator replica died under the job (retry it), as opposed to the job failing."""
    names = {type(e).__name__ for e in (exc, exc.__cause__) if e is not None}
    return bool(names & set(REPLICA_LOST)) or any(n in str(exc) for n in REPLICA_LOST)


@dataclass
class LiveJob:
    """A job this replica is running: the record plus what coordinates its writes and waiters."""

    job: JobRecord
    accepted: float = field(default_factory=time.time)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_save: float = 0.0


class JobService:
    def __init__(self, settings: Settings, store: JobStore, generator: GeneratorClient,
                 render: Callable[[JobRecord], dict] | None = None):
        self.settings = settings
        self.store = store
        self.generator = generator
        self.render = render or (lambda job: job.model_dump(mode="json", exclude={"params": {"image_png"}}))
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.live: dict[str, LiveJob] = {}
        self.cancelled_ids: set[str] = set()  # cancelled while waiting in the batch queue: skip them there
        self.draining = False
        self.seconds_per_job = 10.0  # running estimate, for Retry-After
        self._tasks: set[asyncio.Task] = set()
        # Replaced by the ingress with its @serve.batch method; unbatched by default.
        self.generate: Callable[[WorkItem], Awaitable[GeneratedVideo | Exception]] = self._generate_one

    # --- accepting ---------------------------------------------------------------------------
    @property
    def saturated(self) -> bool:
        return len(self.live) >= self.settings.max_pending_jobs

    def check_capacity(self) -> None:
        if self.draining:
            raise Saturated("this replica is shutting down; retry (another replica will take it)", 5)
        if self.saturated:
            wait = math.ceil(self.seconds_per_job * max(1, len(self.live) - self.settings.max_pending_jobs + 1))
            raise Saturated(f"{len(self.live)} jobs are pending (limit {self.settings.max_pending_jobs}); "
                            f"retry after about {wait} s", wait)

    async def submit(self, params: GenerationParams, api: str = "videos", external_id: str | None = None,
                     idempotency: tuple[str, str, str] | None = None, webhook_url: str | None = None,
                     retry_failed: bool = False) -> tuple[JobRecord, bool]:
        """Store the job (and its image) first, then start it. Returns (job, created).

        With `idempotency=(scope, key, fingerprint)` a key seen before returns that job instead
        (created False); a different request under the same key raises IdempotencyConflict;
        `retry_failed` lets a key whose job failed start a new one.
        """
        self.check_capacity()
        now = time.time()
        job = JobRecord(
            id=new_job_id(now), api=api, created_at=int(now), model=self.settings.served_model_name,
            params=params.model_copy(update={"image_png": None}), external_id=external_id,
            idempotency_key=idempotency[1] if idempotency else None, webhook_url=webhook_url,
            owner=self.owner, heartbeat_at=now,
        )
        # Before acknowledging: the image, the record, the unfinished-job marker. A client is waiting, so a
        # storage outage fails these fast (503, nothing accepted) rather than after the full retry budget.
        ack_retry_s = min(ACK_RETRY_S, self.settings.storage_retry_s)
        if params.image_png is not None:
            job.input_key = await self.store.save_input(job.id, params.image_png, retry_s=ack_retry_s)
        await self.store.save(job, retry_s=ack_retry_s)
        await self.store.mark_active(job.id, retry_s=ack_retry_s)
        if idempotency:
            prior = await self._bind_key(job, idempotency, retry_failed)
            if prior is not None:
                return prior, False
        live = LiveJob(job, accepted=now)
        self.live[job.id] = live
        self._spawn(self._run(live, params))
        return job.model_copy(deep=True), True

    async def _bind_key(self, job: JobRecord, idempotency: tuple[str, str, str], retry_failed: bool):
        scope, key, fingerprint = idempotency
        entry = IdempotencyEntry(job_id=job.id, fingerprint=fingerprint)
        existing = await self.store.remember(scope, key, entry)
        if existing is None:
            return None
        prior = await self._get_or_none(existing.job_id)
        if existing.fingerprint != fingerprint:
            await self.store.delete(job)  # never acknowledged
            raise IdempotencyConflict(f"this idempotency key was already used for a different request "
                                      f"(job {existing.job_id}); use a new key for a new request")
        if prior is not None and not (retry_failed and prior.status == JobStatus.failed):
            await self.store.delete(job)  # never acknowledged: the earlier job answers for the key
            return prior
        await self.store.rebind(scope, key, entry)
        return None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- running -----------------------------------------------------------------------------
    async def _run(self, live: LiveJob, params: GenerationParams) -> None:
        job = live.job
        try:
            while True:
                job.attempts += 1
                outcome = await self.generate(WorkItem(job_id=job.id, params=params))
                if live.done.is_set():
                    return  # cancelled while it waited; already finished
                if not isinstance(outcome, Exception):
                    break
                if replica_lost(outcome) and job.attempts < self.settings.max_attempts:
                    logger.warning("job %s: generator replica lost (%s); retrying, attempt %d of %d",
                                   job.id, type(outcome).__name__, job.attempts + 1, self.settings.max_attempts)
                    job.status, job.progress = JobStatus.queued, 0
                    self._spawn(self._save(live))
                    continue
                raise outcome
            await self._store_video(live, outcome)
        except JobCancelled:
            job.status, job.completed_at = JobStatus.failed, int(time.time())
            job.error = JobError(code="cancelled", message="cancelled before it started")
            await self.store.clear_cancel(job.id)
        except Exception as exc:  # noqa: BLE001 - every failure must end in a stored, readable state
            logger.warning("job %s failed: %s", job.id, exc, exc_info=not isinstance(exc, ValueError))
            job.status, job.completed_at = JobStatus.failed, int(time.time())
            if replica_lost(exc):
                message = f"the generator replica was lost {job.attempts} times; giving up"
            else:
                message = _error_message(exc)
            job.error = JobError(code=_error_code(exc), message=message)
        finally:
            if not live.done.is_set():
                await self._finish(live)

    async def _finish(self, live: LiveJob) -> None:
        """Store the final state (retrying through storage outages), then release waiters and the slot."""
        job = live.job
        try:
            await self._save(live)
            await self.store.clear_active(job.id)
        except Exception:  # noqa: BLE001 - the active marker stays; recovery finishes the record later
            logger.exception("job %s: could not store its final state; recovery will", job.id)
        finally:
            live.done.set()
            self.live.pop(job.id, None)
        if job.webhook_url:
            from serve_app.jobs.webhooks import deliver

            self._spawn(deliver(self, job))

    def _mark_dispatched(self, item: WorkItem) -> None:
        live = self.live.get(item.job_id)
        if live is None:
            return
        job = live.job
        job.status, job.started_at = JobStatus.in_progress, int(time.time())
        job.metrics.queue_sec = round(time.time() - live.accepted, 3)
        self._spawn(self._save(live))  # ordered by the job's lock; no storage write on the critical path

    async def _store_video(self, live: LiveJob, video: GeneratedVideo) -> None:
        job = live.job
        job.progress = GENERATION_SHARE
        started = time.perf_counter()
        path = self.store.storage.staging_dir() / f"{job.id}.mp4"
        try:
            if video.mp4 is not None:  # encoded by the backend while it decoded
                await asyncio.to_thread(path.write_bytes, video.mp4)
            else:
                await asyncio.to_thread(encode_mp4, video.frames, job.params.fps, path, self.settings.video_crf,
                                        self.settings.video_preset, video.pixel_format)
            encoded = time.perf_counter()
            size = path.stat().st_size
            await self.store.save_video(job.id, path)
        finally:
            Path(path).unlink(missing_ok=True)
        stored = time.perf_counter()
        now = int(time.time())
        job.metrics = job.metrics.model_copy(update=dict(
            generation_sec=round(video.generation_sec, 3),
            # encoded in the GPU worker: only the part after the decode (inside generation_sec) is the encoder's
            encode_sec=round(video.stages.get("encode_tail", 0.0) if video.mp4 is not None else encoded - started, 3),
            store_sec=round(stored - encoded, 3), total_sec=round(time.time() - live.accepted, 3),
            peak_vram_gb=video.peak_vram_gb, batch_size=video.batch_size, video_bytes=size, stages=video.stages,
        ))
        self.seconds_per_job = 0.8 * self.seconds_per_job + 0.2 * max(0.01, video.generation_sec / video.batch_size)
        job.params = job.params.model_copy(update={"seed": video.seed})
        job.video_key, job.status, job.progress = video_key(job.id), JobStatus.completed, 100
        job.completed_at = now
        job.expires_at = now + self.settings.job_ttl_s if self.settings.job_ttl_s else None

    async def _save(self, live: LiveJob) -> None:
        async with live.lock:
            live.last_save = time.monotonic()
            live.job.heartbeat_at = time.time()
            await self.store.save(live.job.model_copy(deep=True))

    def _on_progress(self, job_id: str, step: int, total: int) -> None:
        live = self.live.get(job_id)
        if live is None or live.job.status.terminal:
            return
        live.job.progress = max(live.job.progress, min(GENERATION_SHARE - 1, GENERATION_SHARE * step // max(total, 1)))
        if time.monotonic() - live.last_save >= PROGRESS_SAVE_INTERVAL_S:
            live.last_save = time.monotonic()
            self._spawn(self._save(live))

    async def run_batch(self, items: list[WorkItem]) -> list[GeneratedVideo | Exception]:
        """Send each group of compatible items to the generator; one outcome per item, in order."""
        outcomes: list[GeneratedVideo | Exception | None] = [None] * len(items)
        for index, item in enumerate(items):
            if item.job_id in self.cancelled_ids:  # no storage round trip here: see recovery.recover_once
                self.cancelled_ids.discard(item.job_id)
                outcomes[index] = JobCancelled(item.job_id)

        async def run_group(indices: list[int]) -> None:
            group = [items[i] for i in indices]
            for item in group:
                self._mark_dispatched(item)
            try:
                async for event in self.generator.stream([item.params for item in group]):
                    if isinstance(event, ProgressEvent):
                        for item in group:
                            self._on_progress(item.job_id, event.step, event.total)
                    else:
                        for index, video in zip(indices, event.videos, strict=True):
                            outcomes[index] = video
            except Exception as exc:  # noqa: BLE001 - reported per job
                for index in indices:
                    outcomes[index] = exc

        todo = [i for i, o in enumerate(outcomes) if o is None]
        groups = [[todo[i] for i in g] for g in group_compatible([items[i] for i in todo])]
        await asyncio.gather(*(run_group(g) for g in groups))
        return [o if o is not None else RuntimeError("the generator returned no video") for o in outcomes]

    async def _generate_one(self, item: WorkItem) -> GeneratedVideo | Exception:
        return (await self.run_batch([item]))[0]

    # --- reading and changing ----------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord:
        live = self.live.get(job_id)
        if live is not None:
            return live.job.model_copy(deep=True)
        job = await self.store.load(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def wait(self, job_id: str, timeout_s: float | None = None, poll_s: float = 1.0) -> JobRecord:
        """The record once completed or failed, or as it stands when `timeout_s` runs out.

        Jobs run by this replica are awaited directly; others are polled in storage.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        live = self.live.get(job_id)
        if live is not None:
            try:
                await asyncio.wait_for(live.done.wait(), timeout_s)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            return live.job.model_copy(deep=True)
        while True:
            job = await self.get(job_id)
            if job.status.terminal or (deadline is not None and time.monotonic() >= deadline):
                return job
            await asyncio.sleep(poll_s if deadline is None else min(poll_s, max(0.0, deadline - time.monotonic())))

    async def list(self, limit: int, after: str | None, ascending: bool) -> tuple[list[JobRecord], bool]:
        ids = await self.store.ids()
        if ascending:
            ids.reverse()
        if after is not None:
            if after not in ids:
                raise JobNotFound(after)
            ids = ids[ids.index(after) + 1:]
        page, has_more = ids[:limit], len(ids) > limit
        records = await asyncio.gather(*(self._get_or_none(i) for i in page))
        return [r for r in records if r is not None], has_more

    async def _get_or_none(self, job_id: str) -> JobRecord | None:
        try:
            return await self.get(job_id)
        except JobNotFound:
            return None

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job (a running one is already on the GPU: 409). Returns the job as it ends."""
        job = await self.get(job_id)
        if job.status != JobStatus.queued:
            raise JobConflict(f"video {job_id} is {job.status.value}; only queued videos can be cancelled")
        live = self.live.get(job_id)
        if live is not None:  # ours: finish it now; the batch queue skips it when it gets there
            self.cancelled_ids.add(job_id)
            live.job.status, live.job.completed_at = JobStatus.failed, int(time.time())
            live.job.error = JobError(code="cancelled", message="cancelled before it started")
            await self._finish(live)
            return live.job.model_copy(deep=True)
        await self.store.request_cancel(job_id)  # another replica's: its next recovery pass sees it
        return await self.wait(job_id, timeout_s=self.settings.max_wait_s)

    async def delete(self, job_id: str) -> None:
        job = await self.get(job_id)
        if job.status == JobStatus.queued:
            job = await self.cancel(job_id)
        if not job.status.terminal:
            raise JobConflict(f"video {job_id} is {job.status.value}; delete it once it has finished")
        await self.store.delete(job)

    async def video_location(self, job: JobRecord | str) -> tuple[Path | None, str | None]:
        """Where a completed video can be read: a local path, or a presigned URL."""
        if isinstance(job, str):
            job = await self.get(job)
        if job.status != JobStatus.completed or not job.video_key:
            raise JobConflict(f"video {job.id} is {job.status.value}, not completed")
        storage = self.store.storage
        path = await asyncio.to_thread(storage.local_path, job.video_key)
        if path is not None:
            return path, None
        return None, await asyncio.to_thread(storage.presigned_url, job.video_key, self.settings.presign_expiry_s)

    async def read_video(self, job_id: str) -> bytes:
        job = await self.get(job_id)
        data = await asyncio.to_thread(self.store.storage.get_bytes, job.video_key) if job.video_key else None
        if data is None:
            raise JobConflict(f"video {job_id} has no stored file")
        return data

    async def generator_status(self, timeout_s: float = 2.0) -> GeneratorStatus:
        try:
            return await self.generator.status(timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            return GeneratorStatus(state="loading",
                                   reason=f"the generator replica is starting (no answer within {timeout_s:g} s)")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return GeneratorStatus(state="failed", reason=f"the generator is unavailable: {exc}")

    def random_seed(self) -> int:
        return random.SystemRandom().randrange(2**32)

    # --- background work and shutting down ---------------------------------------------------
    def start_background(self) -> None:
        """Heartbeats for this replica's jobs, and adoption of other replicas' orphans (recovery.py)."""
        from serve_app.jobs.recovery import heartbeat_loop, recovery_loop

        self.draining = False
        self._background = [asyncio.create_task(heartbeat_loop(self)), asyncio.create_task(recovery_loop(self))]

    async def stop_background(self) -> None:
        for task in getattr(self, "_background", []):
            task.cancel()

    async def drain(self, timeout_s: float) -> int:
        """Stop taking jobs and wait for running ones; returns how many were left (recovery reruns them)."""
        self.draining = True
        waiting = [live.done.wait() for live in self.live.values()]
        if waiting:
            await asyncio.wait([asyncio.ensure_future(w) for w in waiting], timeout=timeout_s)
        left = list(self.live.values())
        for live in left:  # make them stale at once, so the next replica adopts them without waiting
            live.job.heartbeat_at = 0.0
            try:
                await self.store.save(live.job.model_copy(deep=True))
            except Exception:  # noqa: BLE001
                logger.exception("job %s: could not hand over", live.job.id)
        return len(left)


def _error_code(exc: Exception) -> str:
    from serve_app.storage import StorageError

    if isinstance(exc, StorageError):
        return "storage_failed"
    if isinstance(exc, ValueError):
        return "invalid_input"
    return "generation_failed"


def _error_message(exc: Exception) -> str:
    text = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (text[-1] if text and "Traceback" in text[0] else text[0] if text else type(exc).__name__)[:500]
