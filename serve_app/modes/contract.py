"""The old worker's contract: its /generate request and response, and their translation to and from jobs.

Shared by the HTTP route (api/legacy.py) and the buffer worker (buffer.py), so both modes speak it the
same way. Field for field the old worker's shapes: unknown request fields are ignored, as it did.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from serve_app import inputs
from serve_app.contracts import GenerationParams
from serve_app.jobs.records import JobRecord, JobStatus
from serve_app.jobs.service import JobService
from serve_app.settings import Settings

SEED_MAX = 2**32 - 1
PERMANENT = {"invalid_input", "cancelled"}  # retrying the same request cannot help


class GenerateRequest(BaseModel):
    """POST /generate, field for field the old worker's body (its defaults too)."""

    musetalk_job_id: str | None = Field(None, max_length=200)
    image_url: str | None = Field(None, description="reference image (http(s) or data URL); none: text-to-video")
    prompt: str
    num_frames: int = 121
    width: int = 480
    height: int = 832
    steps: int = Field(4, ge=1)
    seed: int = Field(42, ge=0, le=SEED_MAX)
    guidance_scale: float = Field(1.0, ge=0, le=20)
    params: dict = Field(default_factory=dict, description="extra: negative_prompt, fps")


class GenerateMetrics(BaseModel):
    duration_sec: float | None = None
    peak_vram_gb: float | None = None
    fps: int | None = Field(None, description="frame rate of the MP4")
    generation_sec: float | None = None
    num_frames: int | None = None


class GenerateResponse(BaseModel):
    status: Literal["succeeded", "failed"]
    output_url: str | None = None
    metrics: GenerateMetrics | None = None
    error: str | None = None
    job_id: str | None = None


async def generate_params(settings: Settings, body: GenerateRequest) -> GenerationParams:
    """The old worker's request -> GenerationParams (raises inputs.InvalidInput)."""
    extra = body.params or {}
    params = inputs.resolve(
        settings.generation, settings.limits, prompt=body.prompt, seed=body.seed,
        negative_prompt=extra.get("negative_prompt"), width=body.width, height=body.height,
        num_frames=body.num_frames, fps=_int_or_none(extra.get("fps")), steps=body.steps,
        guidance_scale=body.guidance_scale,
    )
    return await inputs.with_reference_image(settings.limits, params, reference=body.image_url, param="image_url")


async def to_generate_response(service: JobService, job: JobRecord, base_url: str) -> GenerateResponse:
    if job.status != JobStatus.completed:
        return GenerateResponse(status="failed", error=job.error.message if job.error else "generation failed",
                                job_id=job.id)
    _, url = await service.video_location(job)
    output_url = url or f"{base_url.rstrip('/')}/v1/videos/{job.id}/content"
    m = job.metrics
    return GenerateResponse(
        status="succeeded", output_url=output_url, job_id=job.id,
        metrics=GenerateMetrics(duration_sec=m.total_sec, peak_vram_gb=m.peak_vram_gb, fps=job.params.fps,
                                generation_sec=m.generation_sec, num_frames=job.params.num_frames),
    )


def _int_or_none(value) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise inputs.InvalidInput(f"params.fps must be an integer; got {value!r}", "params.fps") from None
