"""The HTTP app around a job core with any generator (no Ray): what the unit tests of the HTTP layer drive."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from serve_app.api.app import create_api
from serve_app.jobs.core import build_job_core
from serve_app.jobs.store import JobStore
from serve_app.modes import worker_mode
from serve_app.settings import Settings
from serve_app.storage.local import LocalStorage


def job_core(tmp_path: Path, generator, storage=None, **overrides):
    settings = Settings(storage_url=f"file://{tmp_path}", **overrides).resolve(gpus=0)
    store = JobStore(storage or LocalStorage(tmp_path), settings.storage_retry_s)
    return build_job_core(settings, store, generator)


def api_client(core) -> TestClient:
    """A TestClient whose `with` block runs the core's background work (and the worker mode's), as the ingress does."""
    mode = worker_mode(core.settings, core.service)
    return TestClient(create_api(core.service, core.settings, lifecycle=[core, mode]))
