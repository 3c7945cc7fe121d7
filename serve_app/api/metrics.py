"""GET /metrics: Prometheus text (jobs by status, queue depth, stage and generation seconds, generator replicas
busy and ready, GPU memory); see docs/scaling.md for what each series means."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serve_app.api.deps import get_service
from serve_app.jobs.telemetry import CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}},
            summary="Prometheus metrics of this ingress replica")
async def metrics(request: Request) -> Response:
    return Response(await get_service(request).metrics_text(), media_type=CONTENT_TYPE)
