"""GET /ready: 200 only when the model is loaded and passed its self-check; otherwise 503 and why."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.api.deps import get_service
from serve_app.api.schemas import ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}},
            summary="Readiness: model loaded and self-check passed")
async def ready(request: Request) -> JSONResponse:
    status = await get_service(request).generator_status(timeout_s=2.0)
    body = ReadyResponse(ready=status.ready, reason=None if status.ready else status.reason, generator=status)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if status.ready else 503)
