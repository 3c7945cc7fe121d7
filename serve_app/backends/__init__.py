"""Model backends behind one interface; `create_backend` picks one from resolved settings."""

from __future__ import annotations

from serve_app.backends.base import Backend
from serve_app.settings import Settings


def backend_class(settings: Settings) -> type[Backend]:
    if settings.backend == "diffusers":
        from serve_app.backends.diffusers import DiffusersBackend

        return DiffusersBackend
    if settings.backend == "fastvideo":
        from serve_app.backends.fastvideo import FastVideoBackend

        return FastVideoBackend
    raise ValueError(f"backend {settings.backend!r} is not resolved; call Settings.resolve() first")


def create_backend(settings: Settings) -> Backend:
    cls = backend_class(settings)
    if settings.backend == "fastvideo":
        return cls(settings.models, settings.generation, settings.fastvideo)
    return cls(settings.models, settings.generation)
