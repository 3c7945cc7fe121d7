"""The job service: accept, run, report. It knows nothing of HTTP or of Ray Serve.

Data path of one job: record stored (queued) -> batched trip to the generator (in_progress, progress
per denoising step) -> MP4 encoded off the event loop -> video stored -> record completed. A job is
marked completed only after its video object exists.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from serve_app.backends.base import GeneratedVideo, GenerationParams, ProgressEvent, ResultEvent
from serve_app.backends.status import GeneratorStatus
from serve_app.jobs.batching import WorkItem, group_compatible
from serve_app.jobs.records import JobError, JobRecord, JobStatus, new_job_id, video_key
from serve_app.jobs.store import JobStore
from serve_app.media.video import encode_mp4
from serve_app.settings import Settings

logger = logging.getLogger(__name__)

PROGRESS_SAVE_INTERVAL_S = 1.0
GENERATION_SHARE = 90  # progress 0-90 is denoising, 90-100 encoding and storing


class GeneratorClient(Protocol):
    """How the service reaches the generator (a Serve handle in production, anything in tests)."""

    def stream(self, batch: list[GenerationParams]) -> AsyncIterator[ProgressEvent | ResultEvent]: ...

    async def status(self, timeout_s: float) -> GeneratorStatus: ...


class JobNotFound(LookupError):
    pass


class JobConflict(RuntimeError):
    """The job is not in a state that allows this operation."""


@dataclass
class LiveJob:
    """A job this replica is running: the record plus what coordinates its writes and waiters."""

    job: JobRecord
    accepted: float = field(default_factory=time.time)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_save: float = 0.0


class JobService:
    def __init__(self, settings: Settings, store: JobStore, generator: GeneratorClient):
        self.settings = settings
        self.store = store
        self.generator = generator
        self.live: dict[str, LiveJob] = {}
        self._tasks: set[asyncio.Task] = set()
        # Replaced by the ingress with its @serve.batch method; unbatched by default.
        self.generate: Callable[[WorkItem], Awaitable[GeneratedVideo | Exception]] = self._generate_one

    # --- accepting ---------------------------------------------------------------------------
    async def submit(self, params: GenerationParams, api: str = "videos", external_id: str | None = None) -> JobRecord:
        """Store the job (and its image) first, then start it; returns the queued record."""
        now = time.time()
        job = JobRecord(
            id=new_job_id(now), api=api, created_at=int(now), model=self.settings.served_model_name,
            params=params.model_copy(update={"image_png": None}), external_id=external_id,
        )
        if params.image_png is not None:
            job.input_key = await self.store.save_input(job.id, params.image_png)
        await self.store.save(job)
        live = LiveJob(job, accepted=now)
        self.live[job.id] = live
        self._spawn(self._run(live, params))
        return job.model_copy(deep=True)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- running -----------------------------------------------------------------------------
    async def _run(self, live: LiveJob, params: GenerationParams) -> None:
        job = live.job
        try:
            job.status, job.started_at, job.attempts = JobStatus.in_progress, int(time.time()), job.attempts + 1
            job.metrics.queue_sec = round(time.time() - live.accepted, 3)
            self._spawn(self._save(live))  # ordered by the job's lock; no storage write on the critical path
            outcome = await self.generate(WorkItem(job_id=job.id, params=params))
            if isinstance(outcome, Exception):
                raise outcome
            await self._store_video(live, outcome)
        except Exception as exc:  # noqa: BLE001 - every failure must end in a stored, readable state
            logger.warning("job %s failed: %s", job.id, exc, exc_info=not isinstance(exc, ValueError))
            job.status, job.completed_at = JobStatus.failed, int(time.time())
            job.error = JobError(code=_error_code(exc), message=_error_message(exc))
            await self._save(live)
        finally:
            live.done.set()
            self.live.pop(job.id, None)

    async def _store_video(self, live: LiveJob, video: GeneratedVideo) -> None:
        job = live.job
        job.progress = GENERATION_SHARE
        started = time.perf_counter()
        path = self.store.storage.staging_dir() / f"{job.id}.mp4"
        try:
            await asyncio.to_thread(encode_mp4, video.frames, job.params.fps, path, self.settings.video_crf,
                                    self.settings.video_preset, video.pixel_format)
            encoded = time.perf_counter()
            size = path.stat().st_size
            await asyncio.to_thread(self.store.storage.put_file, video_key(job.id), path, "video/mp4")
        finally:
            Path(path).unlink(missing_ok=True)
        stored = time.perf_counter()
        now = int(time.time())
        job.metrics = job.metrics.model_copy(update=dict(
            generation_sec=round(video.generation_sec, 3), encode_sec=round(encoded - started, 3),
            store_sec=round(stored - encoded, 3), total_sec=round(time.time() - live.accepted, 3),
            peak_vram_gb=video.peak_vram_gb, batch_size=video.batch_size, video_bytes=size, stages=video.stages,
        ))
        job.params = job.params.model_copy(update={"seed": video.seed})
        job.video_key, job.status, job.progress = video_key(job.id), JobStatus.completed, 100
        job.completed_at = now
        job.expires_at = now + self.settings.job_ttl_s if self.settings.job_ttl_s else None
        await self._save(live)

    async def _save(self, live: LiveJob) -> None:
        async with live.lock:
            live.last_save = time.monotonic()
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

        async def run_group(indices: list[int]) -> None:
            group = [items[i] for i in indices]
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

        await asyncio.gather(*(run_group(g) for g in group_compatible(items)))
        return [o if o is not None else RuntimeError("the generator returned no video") for o in outcomes]

    async def _generate_one(self, item: WorkItem) -> GeneratedVideo | Exception:
        return (await self.run_batch([item]))[0]

    # --- reading -----------------------------------------------------------------------------
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

    async def delete(self, job_id: str) -> None:
        job = await self.get(job_id)
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
            return GeneratorStatus(state="loading", reason="the generator replica is starting (loading the model)")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return GeneratorStatus(state="failed", reason=f"the generator is unavailable: {exc}")

    def random_seed(self) -> int:
        return random.SystemRandom().randrange(2**32)


def _error_code(exc: Exception) -> str:
    from serve_app.storage import StorageError

    if isinstance(exc, StorageError):
        return "storage_failed"
    if isinstance(exc, ValueError):
        return "invalid_input"
    return "generation_failed"


def _error_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]
