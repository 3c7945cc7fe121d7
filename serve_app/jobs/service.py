"""The job service: accepting and reading jobs. It knows nothing of HTTP or of Ray Serve.

`submit` stores a job's image, record and unfinished-marker before anything is acknowledged, then
hands the job to the runner. Reads answer from the runner for live jobs and from storage for the
rest, so any replica can answer for any job.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import quote

from serve_app.contracts import GenerationParams, GeneratorPool
from serve_app.jobs.dispatch import GeneratorClient
from serve_app.jobs.admission import Admission
from serve_app.jobs.errors import IdempotencyConflict, JobConflict, JobNotFound
from serve_app.jobs.records import JobRecord, JobStatus, new_job_id
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.store import IdempotencyEntry, JobStore
from serve_app.jobs.telemetry import Telemetry
from serve_app.settings import Settings

ACK_RETRY_S = 3.0  # storage retries while a client waits for its job to be accepted


class JobService:
    def __init__(self, settings: Settings, store: JobStore, runner: JobRunner, generator: GeneratorClient,
                 admission: Admission, telemetry: Telemetry):
        self.settings = settings
        self.store = store
        self.runner = runner
        self.generator = generator
        self.admission = admission
        self.telemetry = telemetry

    # --- accepting ---------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self.admission.pending

    @property
    def draining(self) -> bool:
        return self.runner.draining

    @property
    def saturated(self) -> bool:
        return self.admission.saturated

    def check_capacity(self) -> None:
        """An early refusal, before a request is read (submit takes the slot exactly)."""
        self.admission.check()

    async def submit(self, params: GenerationParams, api: str = "videos", external_id: str | None = None,
                     idempotency: tuple[str, str, str] | None = None, webhook_url: str | None = None,
                     retry_failed: bool = False) -> tuple[JobRecord, bool]:
        """Store the job (and its image) first, then start it. Returns (job, created).

        With `idempotency=(scope, key, fingerprint)` a key seen before returns that job instead
        (created False); a different request under the same key raises IdempotencyConflict;
        `retry_failed` lets a key whose job failed start a new one.
        """
        with self.admission.slot():
            return await self._accept(params, api, external_id, idempotency, webhook_url, retry_failed)

    async def _accept(self, params, api, external_id, idempotency, webhook_url, retry_failed):
        now = time.time()
        job = JobRecord(
            id=new_job_id(now), api=api, created_at=int(now), model=self.settings.served_model_name,
            params=params.model_copy(update={"image_png": None}), external_id=external_id,
            idempotency_key=idempotency[1] if idempotency else None, webhook_url=webhook_url,
            owner=self.runner.owner, heartbeat_at=now,
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
        self.runner.start(job, params, accepted=now)
        self.telemetry.job_accepted()
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

    # --- reading -----------------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord:
        live = self.runner.live.get(job_id)
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
        live = self.runner.live.get(job_id)
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

    async def video_url(self, job: JobRecord) -> str | None:
        """A link to a completed job's video: permanent under `public_video_base_url` if set, else presigned
        (S3-like storage), else None (local files: the service's own /content is the link)."""
        if job.status != JobStatus.completed or not job.video_key:
            raise JobConflict(f"video {job.id} is {job.status.value}, not completed")
        storage = self.store.storage
        if self.settings.public_video_base_url:
            return f"{self.settings.public_video_base_url.rstrip('/')}/{quote(storage.object_name(job.video_key))}"
        return await asyncio.to_thread(storage.presigned_url, job.video_key, self.settings.presign_expiry_s)

    async def open_video(self, job_id: str) -> tuple[Path | None, str | None]:
        """Where a download reads a completed video: a private local path (the caller removes it after use),
        or a presigned URL. JobNotFound if the file is gone (deleted, or expired by the bucket's rule)."""
        job = await self.get(job_id)
        if job.status != JobStatus.completed or not job.video_key:
            raise JobConflict(f"video {job.id} is {job.status.value}, not completed")
        storage = self.store.storage
        path = await asyncio.to_thread(storage.pinned_path, job.video_key)
        if path is not None:
            return path, None
        if not await asyncio.to_thread(storage.exists, job.video_key):
            raise JobNotFound(job_id)
        return None, await self.video_url(job)

    async def read_video(self, job_id: str) -> bytes:
        job = await self.get(job_id)
        data = await asyncio.to_thread(self.store.storage.get_bytes, job.video_key) if job.video_key else None
        if data is None:
            raise JobNotFound(job_id)
        return data

    async def generator_pool(self, timeout_s: float = 2.0) -> GeneratorPool:
        """What the generator replicas say about themselves (never raises: a missing answer is reported)."""
        try:
            statuses = await self.generator.statuses(timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            return GeneratorPool(reason=f"the generator replica is starting (no answer within {timeout_s:g} s)")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return GeneratorPool(reason=f"the generator is unavailable: {exc}")
        return GeneratorPool(replicas=statuses, reason=None if statuses else "no generator replica has reported yet")

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition of this replica (jobs, queue, stages, generator replicas, GPU memory)."""
        pool = await self.generator_pool()
        live = [live.job for live in list(self.runner.live.values())]
        return self.telemetry.render(live, self.runner.dispatcher.waiting, pool)

    # --- changing ----------------------------------------------------------------------------------
    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job (a running one is already on the GPU: 409). Returns the job as it ends."""
        job = await self.get(job_id)
        if job.status != JobStatus.queued:
            raise JobConflict(f"video {job_id} is {job.status.value}; only queued videos can be cancelled")
        ended = await self.runner.cancel_queued(job_id)
        if ended is not None:
            return ended
        await self.store.request_cancel(job_id)  # another replica's: its next recovery pass sees it
        return await self.wait(job_id, timeout_s=self.settings.max_wait_s)

    async def delete(self, job_id: str) -> None:
        job = await self.get(job_id)
        if job.status == JobStatus.queued:
            job = await self.cancel(job_id)
        if not job.status.terminal:
            raise JobConflict(f"video {job_id} is {job.status.value}; delete it once it has finished")
        await self.store.delete(job)
