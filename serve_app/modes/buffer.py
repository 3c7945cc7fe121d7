"""`WORKER_MODE=buffer`: pull jobs from an orchestrator, as the old worker did, and feed the same generator.

The orchestrator protocol (the old worker's, unchanged), all with header `X-Internal-API-Key`:
- every `buffer_heartbeat_s`: POST {base}/internal/buffer/workers/{worker_id}/heartbeat
  {"status": "idle" | "busy", "gpu_class": ..., "capacity": N}
- while below capacity: POST {base}/internal/buffer/jobs/claim {"worker_id": ...} -> {"job": {...} | null}
  (the job carries `buffer_job_id` and the /generate fields, at top level or under `payload`)
- POST {base}/internal/buffer/jobs/{buffer_job_id}/status: {"status": "running", "progress": 0-100} while it
  runs, then {"status": "succeeded" | "failed", "output_url", "metrics", "error"}.

A claimed job is submitted like any other (record stored first, `buffer_job_id` as its idempotency key), so a
job claimed twice after a crash is not generated twice. Reports are retried until the orchestrator answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from pydantic import ValidationError

from serve_app.inputs import InvalidInput
from serve_app.jobs.errors import Saturated
from serve_app.jobs.service import JobService
from serve_app.jobs.store import fingerprint
from serve_app.modes.contract import GenerateRequest, GenerateResponse, generate_params, to_generate_response
from serve_app.modes.http import HttpMode
from serve_app.settings import Settings

logger = logging.getLogger(__name__)
POLL_S = 2.0


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

    async def _post(self, path: str, body: dict) -> dict | None:
        resp = await self.client.post(f"{self.base}{path}", json=body)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    async def _heartbeats(self) -> None:
        while True:
            status = "busy" if self.running else "idle"
            try:
                await self._post(f"/internal/buffer/workers/{self.worker_id}/heartbeat",
                                 {"status": status, "gpu_class": self.settings.gpu_class,
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

    async def _report(self, buffer_job_id: str, body: dict, final: bool) -> None:
        delay = 1.0
        while True:
            try:
                await self._post(f"/internal/buffer/jobs/{buffer_job_id}/status", body)
                return
            except Exception as exc:  # noqa: BLE001
                if not final:
                    return  # progress reports are best effort; the final one must arrive
                logger.warning("buffer report for %s failed (%s); retrying in %.0f s", buffer_job_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)

    async def _handle(self, job: dict) -> None:
        buffer_job_id = str(job.get("buffer_job_id") or job.get("id") or "")
        payload = job.get("payload") if isinstance(job.get("payload"), dict) else job
        try:
            body = GenerateRequest.model_validate(payload)
            params = await generate_params(self.settings, body)
            record, _ = await self.service.submit(
                params, api="generate", external_id=body.musetalk_job_id,
                idempotency=("buffer", buffer_job_id, fingerprint(body.model_dump())), retry_failed=True)
        except ValidationError as exc:
            return await self._report(buffer_job_id, GenerateResponse(
                status="failed", error=describe_errors(exc.errors())).model_dump(), final=True)
        except (InvalidInput, Saturated) as exc:
            return await self._report(buffer_job_id, GenerateResponse(status="failed", error=str(exc)).model_dump(),
                                      final=True)
        await self._report(buffer_job_id, {"status": "running", "progress": record.progress}, final=False)
        progress = record.progress
        while True:
            current = await self.service.wait(record.id, timeout_s=POLL_S)
            if current.status.terminal:
                break
            if current.progress != progress:
                progress = current.progress
                await self._report(buffer_job_id, {"status": "running", "progress": progress}, final=False)
        base = self.settings.public_base_url or "http://localhost:8000"
        result = await to_generate_response(self.service, current, base)
        await self._report(buffer_job_id, result.model_dump(), final=True)


def describe_errors(errors: list) -> str:
    """Pydantic errors -> one sentence naming the fields, as the HTTP layer words them."""
    parts = []
    for err in errors[:5]:
        field = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{field}: {'is required' if err.get('type') == 'missing' else err.get('msg', 'is invalid')}")
    return "; ".join(parts)
