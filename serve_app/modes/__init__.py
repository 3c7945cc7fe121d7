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


def check_links_reach_clients(settings: Settings) -> None:
    """Queue and buffer jobs come from elsewhere (Salad's queue, an orchestrator): their `output_url` must be a
    link that client can open, never this container's localhost. Refuse to start otherwise, saying what to set."""
    if settings.worker_mode not in ("queue", "buffer") or not settings.storage_url.startswith("file://"):
        return
    if settings.public_video_base_url or settings.public_base_url:
        return
    raise ValueError(
        f"WORKER_MODE={settings.worker_mode} with local-file storage ({settings.storage_url}) and no public URL: the "
        "videos' links would point at this container's localhost, which the clients of the queue cannot open. Set "
        "B2_KEY_ID, B2_APP_KEY and B2_BUCKET_NAME (the old worker's B2 storage), or FASTWAN_STORAGE_URL=s3://... "
        "(with FASTWAN_PUBLIC_VIDEO_BASE_URL for permanent links), or FASTWAN_PUBLIC_BASE_URL=<this service's "
        "public URL> to serve the files from here")


def worker_mode(settings: Settings, service: JobService) -> HttpMode:
    if settings.worker_mode == "buffer":
        from serve_app.modes.buffer import BufferWorker

        return BufferWorker(settings, service)
    return QueueMode() if settings.worker_mode == "queue" else HttpMode()
