"""GET /ready: 200 only when the model is loaded and passed its self-check; otherwise 503 and why."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.api.deps import get_service
from serve_app.api.schemas import ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}},
            summary="Readiness: model loaded and self-check passed")
async def ready(request: Request) -> JSONResponse:
    service = get_service(request)
    status = await service.generator_status(timeout_s=2.0)
    reason = None if status.ready else status.reason
    if status.ready and (service.saturated or service.draining):
        reason = ("shutting down" if service.draining else
                  f"saturated: {service.pending} jobs pending (limit {service.settings.max_pending_jobs})")
    body = ReadyResponse(ready=reason is None, reason=reason, generator=status, pending_jobs=service.pending,
                         saturated=service.saturated)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)
