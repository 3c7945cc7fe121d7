"""Job records in storage, next to the videos: `jobs/<id>.json`, `inputs/<id>.png`, `videos/<id>.mp4`.

Also the small objects that make jobs safe across replicas and restarts: `active/<id>` while a job is
unfinished, `leases/<id>/<attempt>` (who reruns an orphaned job), `cancel/<id>`, and
`idempotency/<hash>`. Writes retry with backoff for `storage_retry_s`; everything runs in threads so the
ingress event loop never blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time

from pydantic import BaseModel

from serve_app.jobs.records import JobRecord, active_key, input_key, record_key, video_key
from serve_app.storage import Storage, StorageError

logger = logging.getLogger(__name__)
JOB_ID = re.compile(r"^video_[0-9a-f]{28}$")


class IdempotencyEntry(BaseModel):
    job_id: str
    fingerprint: str


class JobStore:
    def __init__(self, storage: Storage, retry_s: float = 30.0):
        self.storage = storage
        self.retry_s = retry_s

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
        await self._retry(f"save {job.id}", self.storage.put_bytes, record_key(job.id), data, "application/json",
                          retry_s=retry_s)

    async def load(self, job_id: str) -> JobRecord | None:
        if not JOB_ID.match(job_id):
            return None
        data = await self._retry(f"load {job_id}", self.storage.get_bytes, record_key(job_id))
        return JobRecord.model_validate_json(data) if data else None

    async def save_input(self, job_id: str, png: bytes, retry_s: float | None = None) -> str:
        key = input_key(job_id)
        await self._retry(f"save input {job_id}", self.storage.put_bytes, key, png, "image/png", retry_s=retry_s)
        return key

    async def load_input(self, key: str) -> bytes | None:
        return await self._retry(f"load {key}", self.storage.get_bytes, key)

    async def ids(self) -> list[str]:
        """Every job id, newest first (ids sort by creation time)."""
        keys = await self._retry("list jobs", self.storage.list_keys, "jobs/")
        ids = [k.removeprefix("jobs/").removesuffix(".json") for k in keys if k.endswith(".json")]
        return sorted((i for i in ids if JOB_ID.match(i)), reverse=True)

    async def delete(self, job: JobRecord) -> None:
        """Video and image first, the record last: a crash in between leaves a record, never an orphan file."""
        for key in (video_key(job.id), job.input_key, active_key(job.id)):
            if key:
                await self._retry(f"delete {key}", self.storage.delete, key)
        await self._retry(f"delete {job.id}", self.storage.delete, record_key(job.id))

    async def save_video_bytes(self, job_id: str, mp4: bytes) -> str:
        """Store the finished MP4 (whole or not at all), retrying through storage trouble."""
        key = video_key(job_id)
        await self._retry(f"upload {job_id}", self.storage.put_bytes, key, mp4, "video/mp4")
        return key

    async def video_exists(self, job_id: str) -> bool:
        return await self._retry(f"head video {job_id}", self.storage.exists, video_key(job_id))

    # --- unfinished jobs -----------------------------------------------------------------------
    async def mark_active(self, job_id: str, retry_s: float | None = None) -> None:
        await self._retry(f"activate {job_id}", self.storage.put_bytes, active_key(job_id), b"", "text/plain",
                          retry_s=retry_s)

    async def clear_active(self, job_id: str) -> None:
        await self._retry(f"deactivate {job_id}", self.storage.delete, active_key(job_id))

    async def active_ids(self) -> list[str]:
        keys = await self._retry("list active", self.storage.list_keys, "active/")
        return sorted(k.removeprefix("active/") for k in keys)

    async def claim(self, job_id: str, attempt: int, owner: str) -> bool:
        """Exactly one replica wins attempt N of an orphaned job (an atomic create-if-absent)."""
        return await self._retry(f"lease {job_id}", self.storage.put_if_absent, f"leases/{job_id}/{attempt}",
                                 owner.encode(), "text/plain")

    async def request_cancel(self, job_id: str) -> None:
        await self._retry(f"cancel {job_id}", self.storage.put_bytes, f"cancel/{job_id}", b"", "text/plain")

    async def cancel_requests(self) -> list[str]:
        """Ids other replicas asked to cancel (one LIST, read by the recovery pass, not per job)."""
        keys = await self._retry("list cancels", self.storage.list_keys, "cancel/")
        return [k.removeprefix("cancel/") for k in keys]

    async def clear_cancel(self, job_id: str) -> None:
        await self._retry(f"uncancel {job_id}", self.storage.delete, f"cancel/{job_id}")

    # --- idempotency ---------------------------------------------------------------------------
    @staticmethod
    def _idem_key(scope: str, key: str) -> str:
        return "idempotency/" + hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()

    async def remember(self, scope: str, key: str, entry: IdempotencyEntry) -> IdempotencyEntry | None:
        """Bind `key` to a job; returns the entry already bound (and binds nothing) if there is one."""
        name = self._idem_key(scope, key)
        data = entry.model_dump_json().encode()
        if await self._retry("idempotency", self.storage.put_if_absent, name, data, "application/json"):
            return None
        existing = await self._retry("idempotency", self.storage.get_bytes, name)
        return IdempotencyEntry.model_validate_json(existing) if existing else None

    async def rebind(self, scope: str, key: str, entry: IdempotencyEntry) -> None:
        """Point `key` at a new job (after its old job failed, a retry generates again)."""
        await self._retry("idempotency", self.storage.put_bytes, self._idem_key(scope, key),
                          entry.model_dump_json().encode(), "application/json")


def fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]
