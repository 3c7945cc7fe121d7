"""The job record: what was asked, where it stands, and where its video is.

A record is stored (in the same storage as the videos) before a request is acknowledged, and
rewritten at each state change, so any ingress replica, or a restarted one, can answer for it.
State changes go through the named transitions below (`start`, `requeue`, `complete`, `fail`), which
refuse a move the state machine does not allow: a finished job never changes again.
"""

from __future__ import annotations

import secrets
import time
from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field

from serve_app.contracts import GenerationParams


class JobStatus(str, Enum):
    queued = "queued"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.completed, JobStatus.failed)


ALLOWED = {
    JobStatus.queued: {JobStatus.queued, JobStatus.in_progress, JobStatus.completed, JobStatus.failed},
    JobStatus.in_progress: {JobStatus.queued, JobStatus.in_progress, JobStatus.completed, JobStatus.failed},
}


class JobError(BaseModel):
    code: str = Field(description="machine-readable: invalid_input, generation_failed, storage_failed, ...")
    message: str


class JobMetrics(BaseModel):
    queue_sec: float | None = None
    generation_sec: float | None = None
    encode_sec: float | None = None
    store_sec: float | None = None
    total_sec: float | None = None
    peak_vram_gb: float | None = None
    batch_size: int | None = None
    video_bytes: int | None = None
    stages: dict[str, float] = Field(default_factory=dict, description="model stages (FastVideo backend)")
    generated_size: str | None = Field(None, description="WIDTHxHEIGHT the model made; the MP4 is `size`, scaled "
                                                          "to it when the two differ")
    requested_num_frames: int | None = Field(None, description="frames asked for, when the model made another "
                                                               "count (4k+1)")
    replica: str | None = Field(None, description="the generator replica that made it")
    node: str | None = Field(None, description="the Ray node that replica ran on")
    generation_started_at: float | None = Field(None, description="unix time the generator took it")
    generation_ended_at: float | None = Field(None, description="unix time the generator finished it")


class WebhookState(BaseModel):
    attempts: int = 0
    delivered_at: int | None = None
    last_status: int | None = None
    last_error: str | None = None


class JobRecord(BaseModel):
    id: str
    api: Literal["videos", "generate"] = "videos"
    status: JobStatus = JobStatus.queued
    progress: int = Field(0, ge=0, le=100)
    created_at: int
    started_at: int | None = None
    completed_at: int | None = None
    expires_at: int | None = None
    model: str
    params: GenerationParams = Field(description="image_png is never stored here; see input_key")
    input_key: str | None = None
    video_key: str | None = None
    error: JobError | None = None
    metrics: JobMetrics = Field(default_factory=JobMetrics)
    idempotency_key: str | None = None
    external_id: str | None = Field(None, description="the old worker's musetalk_job_id")
    attempts: int = 0
    owner: str | None = Field(None, description="the ingress replica running it")
    heartbeat_at: float | None = Field(None, description="last sign of life from its owner (unix time)")
    webhook_url: str | None = None
    webhook: WebhookState | None = None

    @property
    def seconds(self) -> float:
        return (self.params.num_frames - 1) / self.params.fps

    # --- transitions -------------------------------------------------------------------------------
    def _move(self, to: JobStatus) -> None:
        if to not in ALLOWED.get(self.status, ()):
            raise ValueError(f"job {self.id} is {self.status.value}; it cannot become {to.value}")
        self.status = to

    def start(self, now: float) -> None:
        """A generator took the job."""
        self._move(JobStatus.in_progress)
        self.started_at = int(now)

    def requeue(self) -> None:
        """Back in the queue (its generator replica was lost, or its owner died): it will run again."""
        self._move(JobStatus.queued)
        self.progress = 0

    def complete(self, video_key: str, now: float, ttl_s: int | None) -> None:
        """Only once the video is stored."""
        self._move(JobStatus.completed)
        self.video_key, self.progress, self.completed_at = video_key, 100, int(now)
        self.expires_at = int(now) + ttl_s if ttl_s else None

    def fail(self, code: str, message: str, now: float) -> None:
        self._move(JobStatus.failed)
        self.error, self.completed_at = JobError(code=code, message=message), int(now)


def new_job_id(now: float | None = None) -> str:
    """`video_` + 12 hex digits of milliseconds + 16 random hex: sorting ids sorts by creation time."""
    ms = int((now if now is not None else time.time()) * 1000)
    return f"video_{ms:012x}{secrets.token_hex(8)}"


def video_key(job_id: str) -> str:
    return f"videos/{job_id}.mp4"


def input_key(job_id: str) -> str:
    return f"inputs/{job_id}.png"


def record_key(job_id: str) -> str:
    return f"jobs/{job_id}.json"


def active_key(job_id: str) -> str:
    """Marker that exists while the job is not finished: recovery lists these, not every record."""
    return f"active/{job_id}"


def deleted_key(job_id: str) -> str:
    """Tombstone of a deleted job: late writers (webhook outcomes, recovery) check it and write nothing."""
    return f"deleted/{job_id}"
