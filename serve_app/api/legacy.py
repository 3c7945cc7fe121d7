"""The old worker's contract over HTTP, drop-in: synchronous POST /generate and GET /health.

The shapes and their translation are in modes/contract.py (the buffer worker speaks them too). As the old
worker did, in every mode, whatever fails answers HTTP 200 with `status: "failed"` and the reason. Only what
Salad's job queue should retry answers otherwise: 429 when this replica is saturated or shutting down, 503
when storage is down (nothing was accepted), both with Retry-After.
"""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from serve_app.api.deps import get_service, get_settings
from serve_app.api.errors import ErrorResponse, describe_validation
from serve_app.api.schemas import GenerateRequest, GenerateResponse, HealthResponse
from serve_app.inputs import InvalidInput
from serve_app.jobs.store import fingerprint
from serve_app.modes.contract import generate_params, to_generate_response

router = APIRouter(tags=["old worker"])

BODY = {"requestBody": {"required": True,
                        "content": {"application/json": {"schema": GenerateRequest.model_json_schema()}}}}


@router.post("/generate", response_model=GenerateResponse, openapi_extra=BODY,
             responses={429: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
             summary="Generate and wait (the old worker's endpoint); the MP4 goes to storage")
async def generate(request: Request) -> JSONResponse:
    settings, service = get_settings(request), get_service(request)
    service.check_capacity()
    try:
        try:
            data = await request.json()
            body = GenerateRequest.model_validate(data if isinstance(data, dict) else {})
        except (ValueError, RecursionError) as exc:  # bad JSON, too deep, or a ValidationError
            message = describe_validation(exc.errors())[0] if isinstance(exc, ValidationError) else \
                "request body must be a JSON object"
            raise InvalidInput(message) from None
        params = await generate_params(settings, body)
    except InvalidInput as exc:
        error = f"{exc.param}: {exc.message}" if exc.param and not exc.message.startswith(exc.param) else exc.message
        return JSONResponse(GenerateResponse(status="failed", error=error).model_dump(), status_code=200)
    # A retried job (same Salad-Job-Id or musetalk_job_id) gets the stored result, or waits for the job
    # still running; only a failed earlier attempt generates again.
    key = request.headers.get("salad-job-id") or body.musetalk_job_id
    idempotency = ("generate", key, fingerprint(body.model_dump())) if key else None
    job, _ = await service.submit(params, api="generate", external_id=body.musetalk_job_id,
                                  idempotency=idempotency, retry_failed=True)
    job = await service.wait(job.id)
    response = await to_generate_response(service, job, str(settings.public_base_url or request.base_url))
    return JSONResponse(response.model_dump(), status_code=200)


@router.get("/health", response_model=HealthResponse, summary="Liveness (always 200) and whether the model is loaded")
async def health(request: Request) -> HealthResponse:
    pool = await get_service(request).generator_pool(timeout_s=2.0)
    return HealthResponse(model_loaded=bool(pool.serving(after_warmup=False)))
