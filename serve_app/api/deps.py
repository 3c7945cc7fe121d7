"""What route handlers reach through the app: the job service and the settings (set by create_api)."""

from fastapi import Request

from serve_app.jobs.service import JobService
from serve_app.settings import Settings


def get_service(request: Request) -> JobService:
    return request.app.state.service


def get_settings(request: Request) -> Settings:
    return request.app.state.settings

