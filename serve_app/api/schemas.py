"""Pydantic models of every HTTP request and response.

Two contracts: the OpenAI Videos API (`/v1/videos`, unknown fields rejected so typos surface) and
the old worker's `/generate` + `/health` (unknown fields ignored, exactly as the old worker did, so
its clients switch without changes).
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.contracts import GeneratorStatus
from serve_app.jobs.records import JobMetrics, JobRecord
from serve_app.modes.contract import SEED_MAX, GenerateMetrics, GenerateRequest, GenerateResponse, Int, Number

__all__ = ["GenerateMetrics", "GenerateRequest", "GenerateResponse", "HealthResponse", "ImageReference",
           "ReadyResponse", "VideoCreateRequest", "VideoDeleted", "VideoList", "VideoObject"]


# --- OpenAI Videos API ------------------------------------------------------------------------
SIZE_PATTERN = r"^\s*[0-9]{1,5}\s*[xX*]\s*[0-9]{1,5}\s*$"
SECONDS_PATTERN = r"^\s*[0-9]{1,6}(\.[0-9]{1,6})?\s*$"


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
    seconds: Annotated[str, Field(json_schema_extra={"pattern": SECONDS_PATTERN})] | Number | None = Field(
        None, description="clip length; frames = seconds x fps, rounded to 4k+1 (at least 5)")
    size: str | None = Field(None, json_schema_extra={"pattern": SIZE_PATTERN},
                             description="WIDTHxHEIGHT, even sides, e.g. 1280x704 (the model's own) or 720x1280 "
                                         "(made at the nearest multiples of 32 and delivered at exactly this size)")
    input_reference: str | ImageReference | None = Field(
        None, description="reference image: http(s) URL, data URL, or {image_url}")
    # extensions
    seed: Int | None = Field(None, ge=0, le=SEED_MAX)
    num_frames: Int | None = Field(None, ge=1, description="frames (the model makes 4k+1: another count is rounded "
                                                           "to the nearest); overrides seconds")
    fps: Int | None = Field(None, ge=1, le=60)
    negative_prompt: str | None = None
    guidance_scale: Number | None = Field(None, ge=0, le=20)
    num_inference_steps: Int | None = Field(None, ge=1)
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
    prompt: str | None = None
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
            error=VideoErrorInfo(**job.error.model_dump()) if job.error else None, prompt=p.prompt,
            seconds=f"{round(job.seconds, 2):g}", size="{}x{}".format(*p.output_size), seed=p.seed,
            num_frames=p.num_frames,
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
    generator: GeneratorStatus | None = Field(None, description="one generator replica's status (a ready one)")
    generators: dict[str, int] = Field(default_factory=dict, description="replicas by state, and how many are busy")
    pending_jobs: int = 0
    saturated: bool = False
