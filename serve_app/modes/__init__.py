"""Worker modes, the old worker's `WORKER_MODE`: how jobs reach this service besides the HTTP API.

- http: the APIs only.
- queue: Salad's job-queue worker (a binary the container entrypoint starts) POSTs each job to /generate
  and retries on 408/429/5xx, so a job that can never succeed answers 200 with `status: failed`.
- buffer: pull jobs from an orchestrator (buffer.py).
Each is an object the ingress starts and stops with the HTTP app (`start`/`stop`).
"""

from __future__ import annotations

from serve_app.jobs.service import JobService
from serve_app.modes.http import HttpMode, QueueMode
from serve_app.settings import Settings


def worker_mode(settings: Settings, service: JobService) -> HttpMode:
    if settings.worker_mode == "buffer":
        from serve_app.modes.buffer import BufferWorker

        return BufferWorker(settings, service)
    return QueueMode() if settings.worker_mode == "queue" else HttpMode()
