"""Adopt jobs whose ingress died (or was stopped) mid-flight, and pick up cancels other replicas recorded.

Every unfinished job has an `active/<id>` marker. Every `recovery_interval_s` each replica looks at the
markers; a job whose heartbeat is older than `stale_after_s` is claimed through an atomic lease (one
replica wins) and handed to this replica's runner (`JobRunner.adopt`), which completes it if its video
is already stored, fails it if it has used its `max_attempts`, and otherwise runs it again here.
"""

from __future__ import annotations

import asyncio
import logging
import time

from serve_app.jobs.runner import JobRunner
from serve_app.jobs.store import JobStore
from serve_app.settings import ReliabilitySettings

logger = logging.getLogger(__name__)


class Recovery:
    def __init__(self, store: JobStore, runner: JobRunner, reliability: ReliabilitySettings):
        self.store, self.runner, self.reliability = store, runner, reliability

    async def loop(self, first_delay_s: float = 2.0) -> None:
        await asyncio.sleep(first_delay_s)
        while True:
            try:
                await self.recover_once()
            except Exception:  # noqa: BLE001 - storage may be down; try again next round
                logger.exception("recovery pass failed")
            await asyncio.sleep(self.reliability.recovery_interval_s)

    async def recover_once(self) -> list[str]:
        """One pass over unfinished jobs; returns the ids this replica adopted."""
        for job_id in set(await self.store.cancel_requests()) & set(self.runner.live):
            await self.runner.cancel_queued(job_id)  # asked on another replica for a job queued here
            await self.store.clear_cancel(job_id)
        adopted = []
        for job_id in await self.store.active_ids():
            if job_id in self.runner.live or self.runner.draining:
                continue
            job = await self.store.load(job_id)
            if job is None or job.status.terminal:
                await self.store.clear_active(job_id)  # the record says done; only the marker was left
                continue
            age = time.time() - (job.heartbeat_at if job.heartbeat_at is not None else job.created_at)
            if age < self.reliability.stale_after_s:
                continue
            if not await self.store.claim(job_id, job.attempts + 1, self.runner.owner):
                continue  # another replica took it
            adopted.append(job_id)
            await self.runner.adopt(job)
        return adopted
