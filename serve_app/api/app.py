"""Build the FastAPI app around a job service. No Ray here: tests can drive it with any generator."""

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from serve_app import __version__
from serve_app.api import health, legacy, videos
from serve_app.api.errors import install_error_handlers
from serve_app.api.guards import ApiKeyGuard, BodySizeGuard
from serve_app.jobs.service import JobService
from serve_app.settings import Settings


def create_api(service: JobService, settings: Settings):
    """The FastAPI app wrapped in its guards (API key, body size): an ASGI app."""
    app = create_fastapi(service, settings)
    guarded = BodySizeGuard(app, settings.max_request_bytes)
    return ApiKeyGuard(guarded, [k.get_secret_value() for k in settings.api_keys])


def create_fastapi(service: JobService, settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app):
        service.start_background()
        if settings.worker_mode == "buffer":
            from serve_app.modes.buffer import BufferWorker

            service._background.append(asyncio.create_task(BufferWorker(service).run()))
        yield
        left = await service.drain(settings.drain_timeout_s)  # SIGTERM: finish running jobs first
        await service.stop_background()
        if left:
            import logging

            logging.getLogger("ray.serve").warning("%d jobs left for recovery by the next replica", left)

    app = FastAPI(
        lifespan=lifespan,
        title="FastWan Serve",
        version=__version__,
        description="FastWan2.2-TI2V-5B text/image-to-video on Ray Serve. OpenAI Videos API plus the old "
                    "worker's /generate.",
    )
    app.state.service = service
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(videos.router)
    app.include_router(legacy.router)
    app.include_router(health.router)
    return app
