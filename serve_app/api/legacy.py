"""The old worker's contract, drop-in: synchronous POST /generate and GET /health."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.api import params as P
from serve_app.api.deps import get_service, get_settings
from serve_app.api.errors import ErrorResponse
from serve_app.api.schemas import GenerateMetrics, GenerateRequest, GenerateResponse, HealthResponse
from serve_app.jobs.records import JobRecord, JobStatus
from serve_app.jobs.service import JobService
from serve_app.jobs.store import fingerprint

router = APIRouter(tags=["old worker"])


@router.post("/generate", response_model=GenerateResponse,
             responses={400: {"model": ErrorResponse}, 500: {"model": GenerateResponse}},
             summary="Generate and wait (the old worker's endpoint); the MP4 goes to storage")
async def generate(request: Request, body: GenerateRequest) -> JSONResponse:
    settings, service = get_settings(request), get_service(request)
    service.check_capacity()
    extra = body.params or {}
    params = P.resolve(
        settings, prompt=body.prompt, seed=body.seed, negative_prompt=extra.get("negative_prompt"),
        width=body.width, height=body.height, num_frames=body.num_frames, fps=_int_or_none(extra.get("fps")),
        steps=body.steps, guidance_scale=body.guidance_scale, random_seed=service.random_seed,
    )
    params = await P.with_reference_image(settings, params, reference=body.image_url, param="image_url")
    # A retried job (same Salad-Job-Id or musetalk_job_id) gets the stored result, or waits for the job
    # still running; only a failed earlier attempt generates again.
    key = request.headers.get("salad-job-id") or body.musetalk_job_id
    idempotency = ("generate", key, fingerprint(body.model_dump())) if key else None
    job, _ = await service.submit(params, api="generate", external_id=body.musetalk_job_id,
                                  idempotency=idempotency, retry_failed=True)
    job = await service.wait(job.id)
    response = await to_generate_response(service, job, str(settings.public_base_url or request.base_url))
    return JSONResponse(response.model_dump(), status_code=200 if response.status == "succeeded" else 500)


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


@router.get("/health", response_model=HealthResponse, summary="Liveness (always 200) and whether the model is loaded")
async def health(request: Request) -> HealthResponse:
    status = await get_service(request).generator_status(timeout_s=2.0)
    return HealthResponse(model_loaded=status.ready)


def _int_or_none(value) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise P.invalid(f"params.fps must be an integer; got {value!r}", "params.fps") from None
