"""Wire the job core together: store -> dispatcher -> runner -> recovery -> service, and its background work.

The ingress deployment builds one `JobCore` per replica around a Serve handle; tests build one around
any `GeneratorClient`. `start()` begins heartbeats and recovery; `stop()` drains running jobs first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from serve_app.jobs.admission import Admission
from serve_app.jobs.dispatch import BatchConfig, Dispatcher, GeneratorClient
from serve_app.jobs.records import JobRecord
from serve_app.jobs.recovery import Recovery
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.service import JobService
from serve_app.jobs.store import JobStore
from serve_app.jobs.telemetry import Telemetry
from serve_app.jobs.webhooks import deliver
from serve_app.settings import Settings

logger = logging.getLogger(__name__)


def default_render(job: JobRecord) -> dict:
    return job.model_dump(mode="json", exclude={"params": {"image_png"}})


@dataclass
class JobCore:
    service: JobService
    runner: JobRunner
    recovery: Recovery
    dispatcher: Dispatcher
    settings: Settings
    _background: list[asyncio.Task] = field(default_factory=list)

    async def start(self) -> None:
        """Heartbeats for this replica's jobs, and adoption of other replicas' orphans."""
        self.runner.draining = False
        self._background = [asyncio.create_task(self.runner.keep_alive()),
                            asyncio.create_task(self.recovery.loop())]

    async def stop(self) -> None:
        """Stop taking jobs, let running ones finish (`drain_timeout_s`), then stop the background work."""
        left = await self.runner.drain(self.settings.drain_timeout_s)
        for task in self._background:
            task.cancel()
        await self.dispatcher.close()
        if left:
            logger.warning("%d jobs left for recovery by the next replica", left)


def build_job_core(settings: Settings, store: JobStore, generator: GeneratorClient,
                   render: Callable[[JobRecord], dict] = default_render, batches: bool = True) -> JobCore:
    """`batches`: whether the backend makes several videos faster in one call (see jobs/dispatch.py)."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    dispatcher = Dispatcher(generator, BatchConfig(**settings.batching.model_dump()), batches=batches,
                            job_timeout_s=settings.job_timeout_s)
    runner = JobRunner(store, dispatcher, settings.reliability, owner, ttl_s=settings.job_ttl_s)

    admission = Admission(settings.max_pending_jobs, runner)
    telemetry = Telemetry()

    def on_finished(job: JobRecord) -> None:
        admission.note_finished(job.metrics.generation_sec)
        telemetry.job_finished(job)
        if job.webhook_url:
            runner.spawn(deliver(job, render, store, settings.reliability, settings.limits))

    runner.on_finished = on_finished
    recovery = Recovery(store, runner, settings.reliability)
    service = JobService(settings, store, runner, generator, admission, telemetry)
    return JobCore(service=service, runner=runner, recovery=recovery, dispatcher=dispatcher, settings=settings)
