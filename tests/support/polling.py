"""Waiting on a job over the public API."""

from __future__ import annotations

import time

import httpx


def wait_for_status(base: str, video_id: str, status: str, timeout_s: float = 60, every_s: float = 0.2) -> dict:
    """Poll `GET /v1/videos/{id}` until the job is in `status`; the job object."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = httpx.get(f"{base}/v1/videos/{video_id}", timeout=10).json()
        if job["status"] == status:
            return job
        assert time.monotonic() < deadline, f"{video_id} not {status} after {timeout_s} s: {job}"
        time.sleep(every_s)
