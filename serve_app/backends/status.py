"""What the generator replica reports about itself (to /ready, /health and the logs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from serve_app.backends.base import BackendInfo


class GeneratorStatus(BaseModel):
    state: Literal["loading", "ready", "failed"]
    reason: str | None = None
    info: BackendInfo | None = None
    load_sec: float | None = None
    selfcheck_sec: float | None = None
    ready_at: float | None = None  # Unix time the replica turned ready: what a prober sees later is HTTP's lag
    warmup: Literal["off", "running", "done", "failed"] = "off"
    warmup_sec: float | None = None
    busy: bool = False

    @property
    def ready(self) -> bool:
        return self.state == "ready"
