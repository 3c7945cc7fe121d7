"""The old worker's contract over HTTP, drop-in: synchronous POST /generate and GET /health.

The shapes and their translation are in modes/contract.py (the buffer worker speaks them too). In
`WORKER_MODE=queue` Salad's job-queue worker calls /generate and retries on 408/429/5xx: a request that can
never succeed (bad input) therefore answers 200 with `status: failed`, while failures worth a retry
(generation error, saturation, storage outage) keep their 5xx/429 (the mode decides, see modes/).
"""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from serve_app.api.deps import get_mode, get_service, get_settings
from serve_app.api.errors import ErrorResponse, describe_validation
from serve_app.api.schemas import GenerateRequest, GenerateResponse, HealthResponse
from serve_app.inputs import InvalidInput
from serve_app.jobs.store import fingerprint
from serve_app.modes.contract import PERMANENT, generate_params, to_generate_response

router = APIRouter(tags=["old worker"])

BODY = {"requestBody": {"required": True,
                        "content": {"application/json": {"schema": GenerateRequest.model_json_schema()}}}}


@router.post("/generate", response_model=GenerateResponse, openapi_extra=BODY,
             responses={400: {"model": ErrorResponse}, 500: {"model": GenerateResponse}},
             summary="Generate and wait (the old worker's endpoint); the MP4 goes to storage")
async def generate(request: Request) -> JSONResponse:
    settings, service, mode = get_settings(request), get_service(request), get_mode(request)
    service.check_capacity()
    try:
        try:
            data = await request.json()
            body = GenerateRequest.model_validate(data if isinstance(data, dict) else {})
        except ValueError as exc:  # bad JSON, or a ValidationError
            message = describe_validation(exc.errors())[0] if isinstance(exc, ValidationError) else \
                "request body must be a JSON object"
            raise InvalidInput(message) from None
        params = await generate_params(settings, body)
    except InvalidInput as exc:
        if mode.permanent_failures_answer_200:
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
    ok = response.status == "succeeded" or (mode.permanent_failures_answer_200 and permanent)
    return JSONResponse(response.model_dump(), status_code=200 if ok else 500)


@router.get("/health", response_model=HealthResponse, summary="Liveness (always 200) and whether the model is loaded")
async def health(request: Request) -> HealthResponse:
    status = await get_service(request).generator_status(timeout_s=2.0)
    return HealthResponse(model_loaded=status.ready)
