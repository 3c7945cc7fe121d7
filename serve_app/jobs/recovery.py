"""Keep running jobs' heartbeats fresh, adopt jobs whose ingress died (or was stopped) mid-flight, and pick
up cancels that other replicas recorded for jobs queued here.

Every unfinished job has an `active/<id>` marker. An ingress replica refreshes `heartbeat_at` on the
records of the jobs it runs; every `recovery_interval_s` each replica looks at the markers, and a job
whose heartbeat is older than `stale_after_s` is claimed through an atomic lease (one replica wins) and:
- marked completed if its video is already stored (only the final record write was lost);
- failed if it has used its `max_attempts`;
- otherwise run again here, from its stored parameters and reference image.
"""

from __future__ import annotations

import asyncio
import logging
import time

from serve_app.jobs.records import JobError, JobRecord, JobStatus, video_key

logger = logging.getLogger(__name__)


async def heartbeat_loop(service) -> None:
    while True:
        await asyncio.sleep(service.settings.heartbeat_s)
        for live in list(service.live.values()):
            if time.time() - live.job.heartbeat_at >= service.settings.heartbeat_s and not live.job.status.terminal:
                service._spawn(service._save(live))


async def recovery_loop(service, first_delay_s: float = 2.0) -> None:
    await asyncio.sleep(first_delay_s)
    while True:
        try:
            await recover_once(service)
        except Exception:  # noqa: BLE001 - storage may be down; try again next round
            logger.exception("recovery pass failed")
        await asyncio.sleep(service.settings.recovery_interval_s)


async def recover_once(service) -> list[str]:
    """One pass over unfinished jobs; returns the ids this replica adopted."""
    adopted = []
    # cancels asked on another replica for jobs queued here: skipped when the batch queue reaches them
    service.cancelled_ids |= set(await service.store.cancel_requests()) & set(service.live)
    for job_id in await service.store.active_ids():
        if job_id in service.live or service.draining:
            continue
        job = await service.store.load(job_id)
        if job is None or job.status.terminal:
            await service.store.clear_active(job_id)  # the record says done; only the marker was left
            continue
        age = time.time() - (job.heartbeat_at if job.heartbeat_at is not None else job.created_at)
        if age < service.settings.stale_after_s:
            continue
        if not await service.store.claim(job_id, job.attempts + 1, service.owner):
            continue  # another replica took it
        adopted.append(job_id)
        await adopt(service, job)
    return adopted


async def adopt(service, job: JobRecord) -> None:
    from serve_app.jobs.service import LiveJob

    logger.warning("adopting job %s (owner %s silent, %d attempts so far)", job.id, job.owner, job.attempts)
    job.owner, job.heartbeat_at = service.owner, time.time()
    live = LiveJob(job, accepted=time.time())
    if await service.store.video_exists(job.id):
        job.status, job.progress, job.video_key = JobStatus.completed, 100, video_key(job.id)
        job.completed_at = job.completed_at or int(time.time())
        service.live[job.id] = live
        await service._finish(live)
        return
    if job.attempts >= service.settings.max_attempts:
        job.status, job.completed_at = JobStatus.failed, int(time.time())
        job.error = JobError(code="lost", message=f"the job was interrupted {job.attempts} times; giving up")
        service.live[job.id] = live
        await service._finish(live)
        return
    image = await service.store.load_input(job.input_key) if job.input_key else None
    if job.input_key and image is None:
        job.status, job.completed_at = JobStatus.failed, int(time.time())
        job.error = JobError(code="lost", message="the job's reference image is gone from storage")
        service.live[job.id] = live
        await service._finish(live)
        return
    job.status, job.progress = JobStatus.queued, 0
    service.live[job.id] = live
    await service._save(live)
    service._spawn(service._run(live, job.params.model_copy(update={"image_png": image})))
