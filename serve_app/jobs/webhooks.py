"""Tell a client its job finished: POST the job object to its `webhook_url`, signed, with retries.

Headers: `X-FastWan-Event` (video.completed | video.failed), `X-FastWan-Delivery` (job id and
attempt), and, when `webhook_secret` is set, `X-FastWan-Signature: t=<unix>,v1=<hex>` where hex is
HMAC-SHA256(secret, "<t>.<body>"): verify it and reject old `t` to stop replays. A 2xx ends the
deliveries; connection errors, 408, 429 and 5xx are retried with backoff (1, 2, 4 ... s); other 4xx
are final. The URL passes the same address checks as image URLs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

from collections.abc import Callable

from serve_app.jobs.records import JobRecord, JobStatus, WebhookState
from serve_app.jobs.store import JobStore
from serve_app.media.fetch import FetchError, FetchPolicy, post_json
from serve_app.settings import LimitsSettings, ReliabilitySettings

logger = logging.getLogger(__name__)
RETRYABLE = {408, 429}


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """For receivers: check `X-FastWan-Signature` (constant-time) and its age."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def webhook_policy(limits: LimitsSettings) -> FetchPolicy:
    return FetchPolicy(timeout_s=10, max_redirects=0, allow_private=limits.image_url_allow_private,
                       allowed_hosts=limits.image_url_allowed_hosts)


async def deliver(job: JobRecord, render: Callable[[JobRecord], dict], store: JobStore,
                  settings: ReliabilitySettings, limits: LimitsSettings) -> WebhookState:
    """POST the rendered job to its webhook until a final answer, then record the outcome on the job."""
    body = json.dumps(render(job), separators=(",", ":")).encode()
    event = "video.completed" if job.status == JobStatus.completed else "video.failed"
    state = WebhookState()
    for attempt in range(1, settings.webhook_attempts + 1):
        if attempt > 1 and await store.is_deleted(job.id):
            break  # deleted meanwhile: the client no longer wants to hear of it
        state.attempts = attempt
        headers = {"Content-Type": "application/json", "X-FastWan-Event": event,
                   "X-FastWan-Delivery": f"{job.id}-{attempt}", "User-Agent": "fastwan-serve"}
        if settings.webhook_secret is not None:
            headers["X-FastWan-Signature"] = signature(settings.webhook_secret.get_secret_value(),
                                                       int(time.time()), body)
        try:
            status = await post_json(job.webhook_url, body, headers, webhook_policy(limits))
            state.last_status, state.last_error = status, None
            if 200 <= status < 300:
                state.delivered_at = int(time.time())
                break
            if status < 500 and status not in RETRYABLE:
                state.last_error = f"receiver answered {status}; not retried"
                break
        except FetchError as exc:
            state.last_error = str(exc)
        if attempt < settings.webhook_attempts:
            await asyncio.sleep(min(2 ** (attempt - 1), 60))
    if state.delivered_at is None:
        logger.warning("webhook for %s not delivered after %d attempts: %s", job.id, state.attempts,
                       state.last_error or state.last_status)
    job.webhook = state
    try:  # record the outcome; the job itself is already final, and may have been deleted meanwhile
        await store.save_unless_deleted(job)
    except Exception:  # noqa: BLE001
        logger.exception("could not record webhook delivery for %s", job.id)
    return state
