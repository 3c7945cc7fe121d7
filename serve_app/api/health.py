"""GET /ready: 200 once a generator replica serves at full speed (loaded, self-checked and, unless
`ready_after_warmup` is off, warmed up); otherwise 503 and why."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.api.deps import get_service, get_settings
from serve_app.api.schemas import ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}},
            summary="Readiness: a generator replica loaded, self-checked and warmed up")
async def ready(request: Request) -> JSONResponse:
    service, settings = get_service(request), get_settings(request)
    pool = await service.generator_pool(timeout_s=2.0)
    status = pool.representative()
    reason = None
    if not pool.serving(after_warmup=settings.ready_after_warmup):
        reason = status.reason if not status.ready else "warming up: the first videos of the default size " \
                                                         "are being made so that requests run at full speed"
    if status.ready and (service.saturated or service.draining):
        reason = ("shutting down" if service.draining else
                  f"saturated: {service.pending} jobs pending (limit {service.settings.max_pending_jobs})")
    body = ReadyResponse(ready=reason is None, reason=reason, generator=status, generators=pool.counts(),
                         pending_jobs=service.pending, saturated=service.saturated)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)
