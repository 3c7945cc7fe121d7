"""`WORKER_MODE=buffer`: pull jobs from an orchestrator, as the old worker did, and feed the same job core.

The orchestrator protocol is the old worker's, message for message, all with header `X-Internal-API-Key`:
- every `buffer_heartbeat_s`: POST {base}/internal/buffer/workers/{worker_id}/heartbeat
  {"status": "idle" | "busy", "gpu_class": GPU_CLASS or "Unknown GPU", "capacity": N}
- while below capacity: POST {base}/internal/buffer/jobs/claim {"worker_id": ...} -> {"job": {...} | null},
  then 2 s of sleep when there is none. A job's fields are the /generate fields (at top level, or under
  `payload`) with the old buffer defaults: 720x1280, 121 frames, 4 steps, seed 42.
- progress, by musetalk_job_id: POST {base}/internal/videogen/jobs/{musetalk_job_id}/progress with
  {"status": "running", "phase": "downloading", "progress": 0.1}, then "inference" 0.2 once a GPU has it,
  then "uploading" 0.9 once the video is being stored;
- the result, by buffer_job_id: POST {base}/internal/buffer/jobs/{buffer_job_id}/status
  {"status": "succeeded", "output_url", "metrics"} or {"status": "failed", "error"}, then the last progress,
  {"status": "succeeded", "progress": 1.0, "output_url"} or {"status": "failed", "error"}.
A claimed job is submitted like any other (record stored first, `buffer_job_id` as its idempotency key), so a
job claimed twice after a crash is made once. Progress posts are best effort (as the old worker's); the
result is retried until the orchestrator takes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from pydantic import Field, ValidationError

from serve_app.inputs import InvalidInput
from serve_app.jobs.errors import Saturated
from serve_app.jobs.records import JobStatus
from serve_app.jobs.runner import GENERATION_SHARE
from serve_app.jobs.service import JobService
from serve_app.jobs.store import fingerprint
from serve_app.modes.contract import GenerateRequest, GenerateResponse, generate_params, to_generate_response
from serve_app.modes.http import HttpMode
from serve_app.settings import Settings

logger = logging.getLogger(__name__)
POLL_S = 2.0


class BufferJob(GenerateRequest):
    """A claimed job: the /generate fields with the old buffer worker's defaults."""

    buffer_job_id: str = ""
    width: int = 720
    height: int = 1280
    num_frames: int = 121
    steps: int = Field(4, ge=1)
    seed: int = 42


class BufferWorker(HttpMode):
    name = "buffer"

    def __init__(self, settings: Settings, service: JobService):
        self.service = service
        self.settings = settings
        self.task: asyncio.Task | None = None
        if not settings.orchestrator_base_url:
            raise ValueError("WORKER_MODE=buffer needs ORCHESTRATOR_BASE_URL")
        self.base = settings.orchestrator_base_url.rstrip("/")
        self.worker_id = settings.buffer_worker_id or os.environ.get("SALAD_MACHINE_ID") or socket.gethostname()
        key = settings.internal_api_key.get_secret_value() if settings.internal_api_key else ""
        self.headers = {"X-Internal-API-Key": key} if key else {}
        self.running: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=30, headers=self.headers) as client:
            self.client = client
            beat = asyncio.create_task(self._heartbeats())
            try:
                await self._claim_loop()
            finally:
                beat.cancel()

    async def _post(self, path: str, body: dict, timeout_s: float = 10.0) -> dict | None:
        resp = await self.client.post(f"{self.base}{path}", json=body, timeout=timeout_s)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    async def _heartbeats(self) -> None:
        while True:
            try:
                await self._post(f"/internal/buffer/workers/{self.worker_id}/heartbeat",
                                 {"status": "busy" if self.running else "idle", "gpu_class": self.settings.gpu_class,
                                  "capacity": self.settings.buffer_capacity})
            except Exception as exc:  # noqa: BLE001 - the orchestrator may be down; keep beating
                logger.warning("buffer heartbeat failed: %s", exc)
            await asyncio.sleep(self.settings.buffer_heartbeat_s)

    async def _claim_loop(self) -> None:
        while True:
            if len(self.running) >= self.settings.buffer_capacity or self.service.saturated or self.service.draining:
                await asyncio.sleep(0.2)
                continue
            try:
                answer = await self._post("/internal/buffer/jobs/claim", {"worker_id": self.worker_id}) or {}
            except Exception as exc:  # noqa: BLE001
                logger.warning("buffer claim failed: %s", exc)
                await asyncio.sleep(POLL_S)
                continue
            job = answer.get("job")
            if not job:
                await asyncio.sleep(POLL_S)
                continue
            task = asyncio.create_task(self._handle(job))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _progress(self, musetalk_job_id: str | None, **body) -> None:
        """Best effort, as the old worker's (5 s, no retry)."""
        if not musetalk_job_id:
            return
        try:
            await self._post(f"/internal/videogen/jobs/{musetalk_job_id}/progress", body, timeout_s=5.0)
        except Exception as exc:  # noqa: BLE001
            logger.warning("progress update for %s failed: %s", musetalk_job_id, exc)

    async def _result(self, buffer_job_id: str, musetalk_job_id: str | None, result: GenerateResponse) -> None:
        """The status report (retried until taken), then the last progress message."""
        body = {"status": result.status}
        body.update({k: v for k, v in (("output_url", result.output_url), ("error", result.error)) if v})
        if result.metrics is not None:
            body["metrics"] = result.metrics.model_dump(exclude_none=True)
        delay = 1.0
        while True:
            try:
                await self._post(f"/internal/buffer/jobs/{buffer_job_id}/status", body)
                break
            except Exception as exc:  # noqa: BLE001
                logger.warning("buffer report for %s failed (%s); retrying in %.0f s", buffer_job_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
        if result.status == "succeeded":
            await self._progress(musetalk_job_id, status="succeeded", progress=1.0, output_url=result.output_url)
        else:
            await self._progress(musetalk_job_id, status="failed", error=result.error)

    async def _handle(self, job: dict) -> None:
        payload = {**job, **job["payload"]} if isinstance(job.get("payload"), dict) else job
        buffer_job_id = str(payload.get("buffer_job_id") or payload.get("id") or "")
        musetalk_job_id = payload.get("musetalk_job_id")
        await self._progress(musetalk_job_id, status="running", phase="downloading", progress=0.1)
        try:
            body = BufferJob.model_validate(payload)
            params = await generate_params(self.settings, body)
            record, _ = await self.service.submit(
                params, api="generate", external_id=body.musetalk_job_id,
                idempotency=("buffer", buffer_job_id, fingerprint(body.model_dump())), retry_failed=True)
        except ValidationError as exc:
            return await self._result(buffer_job_id, musetalk_job_id,
                                      GenerateResponse(status="failed", error=describe_errors(exc.errors())))
        except (InvalidInput, Saturated) as exc:
            return await self._result(buffer_job_id, musetalk_job_id, GenerateResponse(status="failed", error=str(exc)))
        phases = iter([("inference", 0.2, JobStatus.in_progress), ("uploading", 0.9, None)])
        phase = next(phases)
        while True:
            current = await self.service.wait(record.id, timeout_s=POLL_S)
            while phase is not None and _reached(current, phase[2]):
                await self._progress(musetalk_job_id, status="running", phase=phase[0], progress=phase[1])
                phase = next(phases, None)
            if current.status.terminal:
                break
        base = self.settings.public_base_url or "http://localhost:8000"
        await self._result(buffer_job_id, musetalk_job_id, await to_generate_response(self.service, current, base))


def _reached(job, status: JobStatus | None) -> bool:
    """Has the job got as far as this phase (inference: a GPU took it; uploading: its video is being stored)?"""
    if job.status == JobStatus.completed:
        return True
    if status is not None:
        return job.started_at is not None
    return job.progress >= GENERATION_SHARE


def describe_errors(errors: list) -> str:
    """Pydantic errors -> one sentence naming the fields, as the HTTP layer words them."""
    parts = []
    for err in errors[:5]:
        field = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{field}: {'is required' if err.get('type') == 'missing' else err.get('msg', 'is invalid')}")
    return "; ".join(parts)
