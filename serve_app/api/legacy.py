"""The old worker's contract, drop-in: synchronous POST /generate and GET /health.

In `WORKER_MODE=queue` Salad's job-queue worker calls /generate and retries on 408/429/5xx: a request
that can never succeed (bad input) therefore answers 200 with `status: failed`, while failures worth a
retry (generation error, saturation, storage outage) keep their 5xx/429.
"""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from serve_app.api import params as P
from serve_app.api.deps import get_service, get_settings
from serve_app.api.errors import ApiError, ErrorResponse, describe_validation
from serve_app.api.schemas import GenerateMetrics, GenerateRequest, GenerateResponse, HealthResponse
from serve_app.backends.base import GenerationParams
from serve_app.jobs.records import JobRecord, JobStatus
from serve_app.jobs.service import JobService
from serve_app.jobs.store import fingerprint
from serve_app.settings import Settings

router = APIRouter(tags=["old worker"])
PERMANENT = {"invalid_input", "cancelled"}  # retrying the same request cannot help

BODY = {"requestBody": {"required": True,
                        "content": {"application/json": {"schema": GenerateRequest.model_json_schema()}}}}


async def generate_params(settings: Settings, service: JobService, body: GenerateRequest) -> GenerationParams:
    """The old worker's request -> GenerationParams (shared with the buffer-mode worker)."""
    extra = body.params or {}
    params = P.resolve(
        settings, prompt=body.prompt, seed=body.seed, negative_prompt=extra.get("negative_prompt"),
        width=body.width, height=body.height, num_frames=body.num_frames, fps=_int_or_none(extra.get("fps")),
        steps=body.steps, guidance_scale=body.guidance_scale, random_seed=service.random_seed,
    )
    return await P.with_reference_image(settings, params, reference=body.image_url, param="image_url")


@router.post("/generate", response_model=GenerateResponse, openapi_extra=BODY,
             responses={400: {"model": ErrorResponse}, 500: {"model": GenerateResponse}},
             summary="Generate and wait (the old worker's endpoint); the MP4 goes to storage")
async def generate(request: Request) -> JSONResponse:
    settings, service = get_settings(request), get_service(request)
    service.check_capacity()
    queue_mode = settings.worker_mode == "queue"
    try:
        try:
            data = await request.json()
            body = GenerateRequest.model_validate(data if isinstance(data, dict) else {})
        except ValueError as exc:  # bad JSON, or a ValidationError
            message = describe_validation(exc.errors())[0] if isinstance(exc, ValidationError) else \
                "request body must be a JSON object"
            raise P.invalid(message) from None
        params = await generate_params(settings, service, body)
    except ApiError as exc:
        if queue_mode and exc.status == 400:
            return JSONResponse(GenerateResponse(status="failed", error=exc.message).model_dump(), status_code=200)
        raise
    # A retried job (same Salad-Job-Id or musetalk_job_id) gets the stored result, or waits for the job
    # still running; only a failed earlier attempt generates again.
    key = request.headers.get("salad-job-id") or body.musetalk_job_id
    idempotency = ("generate", key, fingerprint(body.model_dump())) if key else None
    job, _ = await service.submit(params, api="generate", external_id=body.musetalk_job_id,
                                  idempotency=idempotency, retry_failed=True)
    job = await service.wait(job.id)
    response = await to_generate_response(service, job, str(settings.public_base_url or request.base_url))
    permanent = job.error is not None and job.error.code in PERMANENT
    ok = response.status == "succeeded" or (queue_mode and permanent)
    return JSONResponse(response.model_dump(), status_code=200 if ok else 500)


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
    except (TypeError, ValueError, OverflowError):
        raise P.invalid(f"params.fps must be an integer; got {value!r}", "params.fps") from None
