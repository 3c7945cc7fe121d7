"""The old worker's contract: its /generate request and response, and their translation to and from jobs.

Shared by the HTTP route (api/legacy.py) and the buffer worker (buffer.py), so both speak it the same way.
Field for field the old worker's shapes: unknown request fields are ignored, as it did; any size and frame
count are taken (made at the nearest the model makes, delivered at the size asked); the response's
`metrics` keep the old keys with their old meanings, new keys beside them; a failure is `status: "failed"`
with the reason in `error`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from serve_app import inputs
from serve_app.contracts import GenerationParams
from serve_app.jobs.records import JobRecord, JobStatus
from serve_app.jobs.service import JobService
from serve_app.settings import Settings

SEED_MAX = 2**32 - 1
OBJECT_NAME = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def _not_a_bool(value):
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


Int = Annotated[int, BeforeValidator(_not_a_bool)]
Number = Annotated[float, BeforeValidator(_not_a_bool)]


class GenerateExtras(BaseModel):
    """`params` of /generate: the extras the old worker passed along (others are ignored, as it did)."""

    model_config = ConfigDict(extra="allow")

    negative_prompt: str | None = None
    fps: Int | None = Field(None, ge=1, le=60)


class GenerateRequest(BaseModel):
    """POST /generate, field for field the old worker's body (its defaults too)."""

    musetalk_job_id: str | None = Field(None, max_length=200)
    image_url: str | None = Field(None, description="reference image (http(s) or data URL); none: text-to-video")
    prompt: str
    num_frames: Int = 121
    width: Int = 480
    height: Int = 832
    steps: Int = Field(4, ge=1)
    seed: Int = Field(42, ge=0, le=SEED_MAX)
    guidance_scale: Number = Field(1.0, ge=0, le=20)
    params: GenerateExtras = Field(default_factory=GenerateExtras, description="extra: negative_prompt, fps")


class GenerateMetrics(BaseModel):
    """The old keys with their old meanings first, then what the service adds."""

    duration_sec: float | None = Field(None, description="seconds to make the video file (the model and the "
                                                         "encode), as the old worker timed its generate call")
    peak_vram_gb: float | None = None
    fps: float | None = Field(None, description="throughput: frames made per second of duration_sec (not the "
                                                "MP4's frame rate, which is video_fps)")
    video_fps: int | None = Field(None, description="frame rate of the MP4")
    num_frames: int | None = Field(None, description="frames in the MP4")
    requested_num_frames: int | None = Field(None, description="frames asked for (the model makes 4k+1)")
    size: str | None = Field(None, description="WIDTHxHEIGHT of the MP4: what was asked")
    generated_size: str | None = Field(None, description="WIDTHxHEIGHT the model made (multiples of 32)")
    generation_sec: float | None = None
    total_sec: float | None = Field(None, description="from acceptance to the stored video")


class GenerateResponse(BaseModel):
    status: Literal["succeeded", "failed"]
    output_url: str | None = None
    metrics: GenerateMetrics | None = None
    error: str | None = None
    job_id: str | None = None


async def generate_params(settings: Settings, body: GenerateRequest) -> GenerationParams:
    """The old worker's request -> GenerationParams (raises inputs.InvalidInput)."""
    if settings.legacy_object_names and body.musetalk_job_id and not OBJECT_NAME.match(body.musetalk_job_id):
        raise inputs.InvalidInput("musetalk_job_id names the video file: use letters, digits, '.', '_', '-' and '/' "
                                  f"(no '..'), at most 200; got {body.musetalk_job_id!r}", "musetalk_job_id")
    params = inputs.resolve(
        settings.generation, settings.limits, prompt=body.prompt, seed=body.seed,
        negative_prompt=body.params.negative_prompt, width=body.width, height=body.height,
        num_frames=body.num_frames, fps=body.params.fps, steps=body.steps, guidance_scale=body.guidance_scale,
    )
    return await inputs.with_reference_image(settings.limits, params, reference=body.image_url, param="image_url")


async def to_generate_response(service: JobService, job: JobRecord, base_url: str) -> GenerateResponse:
    if job.status != JobStatus.completed:
        return GenerateResponse(status="failed", error=job.error.message if job.error else "generation failed",
                                job_id=job.id)
    url = await service.video_url(job)
    output_url = url or f"{base_url.rstrip('/')}/v1/videos/{job.id}/content"
    m, p = job.metrics, job.params
    # the old worker timed generate_video(save_video=True): the model and the file; an encode that overlapped
    # the decode (the FastVideo backend) is already inside generation_sec
    duration = (m.generation_sec or 0) + (0 if "encode_tail" in m.stages else (m.encode_sec or 0))
    return GenerateResponse(
        status="succeeded", output_url=output_url, job_id=job.id,
        metrics=GenerateMetrics(
            duration_sec=round(duration, 3), peak_vram_gb=m.peak_vram_gb,
            fps=round(p.num_frames / duration, 3) if duration > 0 else 0, video_fps=p.fps, num_frames=p.num_frames,
            requested_num_frames=m.requested_num_frames or p.num_frames, size="{}x{}".format(*p.output_size),
            generated_size=m.generated_size, generation_sec=m.generation_sec, total_sec=m.total_sec),
    )
