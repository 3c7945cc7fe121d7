"""Job records in storage, next to the videos: `jobs/<id>.json`, `inputs/<id>.png`, `videos/<id>.mp4`.

Async wrappers over the synchronous storage (run in threads) so the ingress event loop never blocks.
"""

from __future__ import annotations

import asyncio
import re

from serve_app.jobs.records import JobRecord, input_key, record_key, video_key
from serve_app.storage import Storage

JOB_ID = re.compile(r"^video_[0-9a-f]{28}$")


class JobStore:
    def __init__(self, storage: Storage):
        self.storage = storage

    async def save(self, job: JobRecord) -> None:
        data = job.model_dump_json(exclude={"params": {"image_png"}}).encode()
        await asyncio.to_thread(self.storage.put_bytes, record_key(job.id), data, "application/json")

    async def load(self, job_id: str) -> JobRecord | None:
        if not JOB_ID.match(job_id):
            return None
        data = await asyncio.to_thread(self.storage.get_bytes, record_key(job_id))
        return JobRecord.model_validate_json(data) if data else None

    async def save_input(self, job_id: str, png: bytes) -> str:
        key = input_key(job_id)
        await asyncio.to_thread(self.storage.put_bytes, key, png, "image/png")
        return key

    async def load_input(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self.storage.get_bytes, key)

    async def ids(self) -> list[str]:
        """Every job id, newest first (ids sort by creation time)."""
        keys = await asyncio.to_thread(self.storage.list_keys, "jobs/")
        ids = [k.removeprefix("jobs/").removesuffix(".json") for k in keys if k.endswith(".json")]
        return sorted((i for i in ids if JOB_ID.match(i)), reverse=True)

    async def delete(self, job: JobRecord) -> None:
        """Video and image first, the record last: a crash in between leaves a record, never an orphan file."""
        for key in (video_key(job.id), job.input_key):
            if key:
                await asyncio.to_thread(self.storage.delete, key)
        await asyncio.to_thread(self.storage.delete, record_key(job.id))
