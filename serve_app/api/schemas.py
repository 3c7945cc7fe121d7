"""Pydantic models of every HTTP request and response.

Two contracts: the OpenAI Videos API (`/v1/videos`, unknown fields rejected so typos surface) and
the old worker's `/generate` + `/health` (unknown fields ignored, exactly as the old worker did, so
its clients switch without changes).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.contracts import GeneratorStatus
from serve_app.jobs.records import JobMetrics, JobRecord
from serve_app.modes.contract import SEED_MAX, GenerateMetrics, GenerateRequest, GenerateResponse

__all__ = ["GenerateMetrics", "GenerateRequest", "GenerateResponse", "HealthResponse", "ImageReference",
           "ReadyResponse", "VideoCreateRequest", "VideoDeleted", "VideoList", "VideoObject"]


# --- OpenAI Videos API ------------------------------------------------------------------------
class ImageReference(BaseModel):
    """OpenAI's reference object form of `input_reference`."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(None, description="http(s) URL or data URL")
    file_id: str | None = Field(None, description="not supported here: upload the file or give image_url")


class VideoCreateRequest(BaseModel):
    """POST /v1/videos (JSON, or multipart with `input_reference` as a file)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="what the video shows")
    model: str | None = Field(None, description="the served model name (optional)")
    seconds: str | float | None = Field(None, description="clip length; frames = seconds x fps, rounded to 4k+1")
    size: str | None = Field(None, description="WIDTHxHEIGHT, multiples of 32, e.g. 1280x704")
    input_reference: str | ImageReference | None = Field(
        None, description="reference image: http(s) URL, data URL, or {image_url}")
    # extensions
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    num_frames: int | None = Field(None, description="4k+1 frames; overrides seconds")
    fps: int | None = Field(None, ge=1, le=60)
    negative_prompt: str | None = None
    guidance_scale: float | None = Field(None, ge=0, le=20)
    num_inference_steps: int | None = Field(None, ge=1)
    webhook_url: str | None = Field(None, max_length=2000,
                                    description="POSTed the job object when it completes or fails (signed)")


class VideoErrorInfo(BaseModel):
    code: str
    message: str


class VideoObject(BaseModel):
    """The OpenAI video job object, plus our extensions (seed, num_frames, fps, metrics)."""

    id: str
    object: Literal["video"] = "video"
    model: str
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    error: VideoErrorInfo | None = None
    seconds: str
    size: str
    remixed_from_video_id: str | None = None
    seed: int
    num_frames: int
    fps: int
    metrics: JobMetrics | None = None

    @classmethod
    def from_record(cls, job: JobRecord) -> "VideoObject":
        p = job.params
        return cls(
            id=job.id, model=job.model, status=job.status.value, progress=job.progress,
            created_at=job.created_at, completed_at=job.completed_at, expires_at=job.expires_at,
            error=VideoErrorInfo(**job.error.model_dump()) if job.error else None,
            seconds=f"{round(job.seconds, 2):g}", size=f"{p.width}x{p.height}", seed=p.seed, num_frames=p.num_frames,
            fps=p.fps, metrics=job.metrics if job.status.terminal else None,
        )


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VideoObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


# --- the old worker's contract (shapes in modes/contract.py, shared with the buffer worker) ------
class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    model_loaded: bool


class ReadyResponse(BaseModel):
    ready: bool
    reason: str | None = None
    generator: GeneratorStatus | None = None
    pending_jobs: int = 0
    saturated: bool = False
