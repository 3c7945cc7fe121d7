"""Build the FastAPI app around a job service. No Ray here: tests drive it with any generator."""

from collections.abc import Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from serve_app import __version__
from serve_app.api import health, legacy, metrics, playground, videos
from serve_app.api.errors import install_error_handlers
from serve_app.api.guards import ApiKeyGuard, BodySizeGuard
from serve_app.jobs.service import JobService
from serve_app.settings import Settings


def create_api(service: JobService, settings: Settings, lifecycle: Sequence = ()):
    """The FastAPI app wrapped in its guards (API key, body size): an ASGI app.

    `lifecycle`: objects with async `start()` / `stop()` (the job core, the worker mode), started with the
    app and stopped in reverse when it shuts down (the job core drains its running jobs there).
    """
    app = create_fastapi(service, settings, lifecycle)
    guarded = BodySizeGuard(app, settings.max_request_bytes)
    return ApiKeyGuard(guarded, [k.get_secret_value() for k in settings.api_keys])


def create_fastapi(service: JobService, settings: Settings, lifecycle: Sequence) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app):
        for part in lifecycle:
            await part.start()
        yield
        for part in reversed(lifecycle):  # SIGTERM: the mode stops taking jobs, then running jobs finish
            await part.stop()

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
    app.include_router(metrics.router)
    app.include_router(playground.router)
    app.mount(playground.ASSETS_PATH, playground.assets(), name="playground-assets")
    return app
