"""Job records in storage, next to the videos: `jobs/<id>.json`, `inputs/<id>.png`, `videos/<id>.mp4`.

Also the small objects that make jobs safe across replicas and restarts: `active/<id>` while a job is
unfinished, `leases/<id>/<n>` (who adopts an orphaned job, the n-th time it is orphaned), `cancel/<id>`,
`deleted/<id>` (a tombstone: nothing is written for a deleted job again) and `idempotency/<hash>`. Writes retry with backoff for `storage_retry_s`; everything runs in threads so the
ingress event loop never blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time

from pydantic import BaseModel, Field

from serve_app.jobs.records import JobRecord, active_key, deleted_key, input_key, record_key, video_key
from serve_app.storage import Storage, StorageError

logger = logging.getLogger(__name__)
JOB_ID = re.compile(r"^video_[0-9a-f]{28}$")


class Lease(BaseModel):
    owner: str
    at: float = Field(description="unix time it was taken")


class IdempotencyEntry(BaseModel):
    job_id: str
    fingerprint: str


class KeyLayout(BaseModel):
    """Where objects go: the service's own (records, markers, images) under `internal`, and each video's name."""

    internal: str = Field("", description="prefix of the service's own objects, e.g. 'fastwan/' beside old videos")
    legacy_names: bool = Field(False, description="/generate videos as `{musetalk_job_id}.mp4`, as the old worker")

    def video(self, job: JobRecord) -> str:
        if self.legacy_names and job.api == "generate" and job.external_id:
            return f"{job.external_id}.mp4"
        return self.internal + video_key(job.id)


class JobStore:
    def __init__(self, storage: Storage, retry_s: float = 30.0, layout: KeyLayout | None = None):
        self.storage = storage  # videos, by their names (`layout.video`)
        self.layout = layout or KeyLayout()
        self.meta = storage.within(self.layout.internal)  # everything else
        self.retry_s = retry_s

    def ensure_atomic_creates(self, single_writer: bool = False) -> str:
        """At start: check that the storage's create-if-absent is atomic (idempotency and leases rely on it).

        Returns "atomic", or "in-process" where a store that ignores conditional writes is used by this
        replica alone (`single_writer`); raises with what to do otherwise."""
        import uuid

        from serve_app.storage.single_writer import SingleWriter

        key = f"probe/{uuid.uuid4().hex}"
        try:
            first = self.meta.put_if_absent(key, b"first", "text/plain")
            second = self.meta.put_if_absent(key, b"second", "text/plain")
        finally:
            self.meta.delete(key)
        if first and not second:
            return "atomic"
        if single_writer:
            self.meta = SingleWriter(self.meta)
            logger.warning("storage %s ignores conditional writes; creates are made atomic in this process "
                           "(storage_single_writer): run exactly one ingress replica on it", self.storage.url)
            return "in-process"
        raise RuntimeError(
            f"storage {self.storage.url} does not honour conditional writes (If-None-Match: *): a second "
            "create-if-absent of one object succeeded. Idempotency keys and the recovery of orphaned jobs rely on "
            "them. Use a store that honours them (AWS S3, Cloudflare R2, MinIO), or, if exactly one ingress "
            "replica of one service writes to this storage, set storage_single_writer: true")

    async def _retry(self, what: str, fn, *args, retry_s: float | None = None):
        """Run a storage call in a thread; on StorageError retry with backoff (0.25 s doubling) for retry_s."""
        deadline, delay = time.monotonic() + (self.retry_s if retry_s is None else retry_s), 0.25
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except StorageError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("storage %s failed (%s); retrying in %.2f s", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- records -------------------------------------------------------------------------------
    async def save(self, job: JobRecord, retry_s: float | None = None) -> None:
        data = job.model_dump_json(exclude={"params": {"image_png"}}).encode()
        await self._retry(f"save {job.id}", self.meta.put_bytes, record_key(job.id), data, "application/json",
                          retry_s=retry_s)

    async def load(self, job_id: str) -> JobRecord | None:
        if not JOB_ID.match(job_id):
            return None
        data = await self._retry(f"load {job_id}", self.meta.get_bytes, record_key(job_id))
        return JobRecord.model_validate_json(data) if data else None

    async def save_input(self, job_id: str, png: bytes, retry_s: float | None = None) -> str:
        key = input_key(job_id)
        await self._retry(f"save input {job_id}", self.meta.put_bytes, key, png, "image/png", retry_s=retry_s)
        return key

    async def load_input(self, key: str) -> bytes | None:
        return await self._retry(f"load {key}", self.meta.get_bytes, key)

    async def ids(self) -> list[str]:
        """Every job id, newest first (ids sort by creation time)."""
        keys = await self._retry("list jobs", self.meta.list_keys, "jobs/")
        ids = [k.removeprefix("jobs/").removesuffix(".json") for k in keys if k.endswith(".json")]
        return sorted((i for i in ids if JOB_ID.match(i)), reverse=True)

    async def delete(self, job: JobRecord) -> None:
        """Tombstone first (late writers see it), video and image next, the record last: a crash in between
        leaves a record, never an orphan file; a retried DELETE finishes it."""
        await self._retry(f"tombstone {job.id}", self.meta.put_bytes, deleted_key(job.id), b"", "text/plain")
        await self._retry(f"delete video {job.id}", self.storage.delete, job.video_key or self.layout.video(job))
        for key in (job.input_key, active_key(job.id)):
            if key:
                await self._retry(f"delete {key}", self.meta.delete, key)
        await self.clear_leases(job.id)
        await self._retry(f"delete {job.id}", self.meta.delete, record_key(job.id))

    async def is_deleted(self, job_id: str) -> bool:
        return await self._retry(f"tombstone {job_id}", self.meta.exists, deleted_key(job_id))

    async def save_unless_deleted(self, job: JobRecord) -> bool:
        """For writers that may come after a DELETE (webhook outcomes): never bring a deleted job back."""
        if await self.is_deleted(job.id):
            return False
        await self.save(job)
        if await self.is_deleted(job.id):  # deleted while we wrote: take our write back
            await self._retry(f"delete {job.id}", self.meta.delete, record_key(job.id))
            return False
        return True

    async def save_video_bytes(self, job: JobRecord, mp4: bytes) -> str:
        """Store the finished MP4 (whole or not at all), retrying through storage trouble; returns its key."""
        key = self.layout.video(job)
        await self._retry(f"upload {job.id}", self.storage.put_bytes, key, mp4, "video/mp4")
        return key

    async def video_exists(self, job: JobRecord) -> bool:
        return await self._retry(f"head video {job.id}", self.storage.exists, self.layout.video(job))

    # --- unfinished jobs -----------------------------------------------------------------------
    async def mark_active(self, job_id: str, retry_s: float | None = None) -> None:
        await self._retry(f"activate {job_id}", self.meta.put_bytes, active_key(job_id), b"", "text/plain",
                          retry_s=retry_s)

    async def clear_active(self, job_id: str) -> None:
        await self._retry(f"deactivate {job_id}", self.meta.delete, active_key(job_id))

    async def active_ids(self) -> list[str]:
        keys = await self._retry("list active", self.meta.list_keys, "active/")
        return sorted(k.removeprefix("active/") for k in keys)

    async def claim(self, job_id: str, owner: str, stale_after_s: float) -> int | None:
        """Take the next lease of an orphaned job: its number n (the job's n-th orphaning), or None if another
        replica holds a lease it took less than `stale_after_s` ago. The numbers come from the leases
        themselves, not from the record, so a crash between claiming and saving the record leaves the next
        claim free (n + 1) once lease n is stale."""
        taken = await self._lease_numbers(job_id)
        if taken:
            data = await self._retry(f"read lease {job_id}", self.meta.get_bytes, f"leases/{job_id}/{max(taken)}")
            if data is not None and time.time() - Lease.model_validate_json(data).at < stale_after_s:
                return None  # being adopted right now
        lease = max(taken, default=0) + 1
        won = await self._retry(f"lease {job_id}", self.meta.put_if_absent, f"leases/{job_id}/{lease}",
                                Lease(owner=owner, at=time.time()).model_dump_json().encode(), "application/json")
        return lease if won else None

    async def _lease_numbers(self, job_id: str) -> list[int]:
        keys = await self._retry(f"list leases {job_id}", self.meta.list_keys, f"leases/{job_id}/")
        return [int(k.rsplit("/", 1)[1]) for k in keys if k.rsplit("/", 1)[1].isdigit()]

    async def release_lease(self, job_id: str, lease: int) -> None:
        await self._retry(f"unlease {job_id}", self.meta.delete, f"leases/{job_id}/{lease}")

    async def clear_leases(self, job_id: str) -> None:
        for n in await self._lease_numbers(job_id):
            await self._retry(f"unlease {job_id}", self.meta.delete, f"leases/{job_id}/{n}")

    async def request_cancel(self, job_id: str) -> None:
        await self._retry(f"cancel {job_id}", self.meta.put_bytes, f"cancel/{job_id}", b"", "text/plain")

    async def cancel_requests(self) -> list[str]:
        """Ids other replicas asked to cancel (one LIST, read by the recovery pass, not per job)."""
        keys = await self._retry("list cancels", self.meta.list_keys, "cancel/")
        return [k.removeprefix("cancel/") for k in keys]

    async def clear_cancel(self, job_id: str) -> None:
        await self._retry(f"uncancel {job_id}", self.meta.delete, f"cancel/{job_id}")

    # --- idempotency ---------------------------------------------------------------------------
    @staticmethod
    def _idem_key(scope: str, key: str) -> str:
        return "idempotency/" + hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()

    async def remember(self, scope: str, key: str, entry: IdempotencyEntry) -> IdempotencyEntry | None:
        """Bind `key` to a job; returns the entry already bound (and binds nothing) if there is one."""
        name = self._idem_key(scope, key)
        data = entry.model_dump_json().encode()
        if await self._retry("idempotency", self.meta.put_if_absent, name, data, "application/json"):
            return None
        existing = await self._retry("idempotency", self.meta.get_bytes, name)
        return IdempotencyEntry.model_validate_json(existing) if existing else None

    async def rebind(self, scope: str, key: str, entry: IdempotencyEntry) -> None:
        """Point `key` at a new job (after its old job failed, a retry generates again)."""
        await self._retry("idempotency", self.meta.put_bytes, self._idem_key(scope, key),
                          entry.model_dump_json().encode(), "application/json")


def fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]
