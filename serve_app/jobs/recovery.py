"""Adopt jobs whose ingress died (or was stopped) mid-flight, and pick up cancels other replicas recorded.

Every unfinished job has an `active/<id>` marker. Every `recovery_interval_s` each replica looks at the
markers; a job whose heartbeat is older than `stale_after_s` is claimed through an atomic lease and handed
to this replica's runner (`JobRunner.adopt`), which completes it if its video is already stored, fails it
once it has been orphaned `max_attempts` times, and otherwise runs it again here.

Why this converges whatever the timing of crashes: the n-th orphaning of a job takes lease n, whose number
comes from the leases already there (not from the record, which a crash may leave unchanged), so once
lease n is stale a later pass claims n + 1; and the n-th lease counts as n interruptions, so a job
orphaned again and again ends failed after `max_attempts` of them rather than looping. Two replicas never
adopt one job: a fresh lease is left alone, and a winner re-reads the record and backs off if anyone
finished or saved it since. Markers and leases of a finished job
are removed by its runner, or by the next pass if it died first.
"""

from __future__ import annotations

import asyncio
import logging
import time

from serve_app.jobs.records import JobStatus
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
        await self._settle_cancels()
        adopted = []
        for job_id in await self.store.active_ids():
            if job_id in self.runner.live or self.runner.draining:
                continue
            job = await self.store.load(job_id)
            if job is None or job.status.terminal:  # finished (or deleted): only the markers were left
                await self.store.clear_leases(job_id)
                await self.store.clear_active(job_id)
                continue
            age = time.time() - (job.heartbeat_at if job.heartbeat_at is not None else job.created_at)
            if age < self.reliability.stale_after_s:
                continue
            lease = await self.store.claim(job_id, self.runner.owner, self.reliability.stale_after_s)
            if lease is None:
                continue  # another replica took it
            current = await self.store.load(job_id)
            if current is None or current.status.terminal or current.heartbeat_at != job.heartbeat_at:
                await self.store.release_lease(job_id, lease)  # someone finished or took it since we looked
                continue
            adopted.append(job_id)
            await self.runner.adopt(current, interruptions=lease)
        return adopted

    async def _settle_cancels(self) -> None:
        """Cancels asked on another replica: a job queued here ends cancelled; any other request is spent."""
        for job_id in await self.store.cancel_requests():
            live = self.runner.live.get(job_id)
            if live is not None and live.job.status == JobStatus.queued:
                await self.runner.cancel_queued(job_id)
            elif live is None:
                job = await self.store.load(job_id)
                if job is not None and not job.status.terminal:
                    continue  # queued on a replica that has not seen it yet, or orphaned: keep it for them
            await self.store.clear_cancel(job_id)
