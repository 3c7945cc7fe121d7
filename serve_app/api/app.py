"""Build the FastAPI app around a job service. No Ray here: tests can drive it with any generator."""

from fastapi import FastAPI

from serve_app import __version__
from serve_app.api import health, legacy, videos
from serve_app.api.errors import install_error_handlers
from serve_app.jobs.service import JobService
from serve_app.settings import Settings


def create_api(service: JobService, settings: Settings) -> FastAPI:
    app = FastAPI(
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
