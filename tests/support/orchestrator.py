"""A small orchestrator speaking the old worker's buffer protocol, for the buffer-mode tests."""

from __future__ import annotations

import time

from fastapi import FastAPI, Header, HTTPException

from devtools.procs import free_port
from tests.support.asgi_server import ThreadedServer

KEY = "orchestrator-secret"


class Orchestrator:
    def __init__(self, jobs: list[dict]):
        self.jobs = list(jobs)
        self.heartbeats: list[dict] = []
        self.claims: list[str] = []
        self.reports: dict[str, list[dict]] = {}
        self.progress: dict[str, list[dict]] = {}
        self.order: list[tuple[str, str, dict]] = []  # (kind, id, body) in arrival order
        self.app = self._build()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _build(self) -> FastAPI:
        app = FastAPI()

        def check(key):
            if key != KEY:
                raise HTTPException(401, "bad internal key")

        @app.post("/internal/buffer/workers/{worker_id}/heartbeat")
        def heartbeat(worker_id: str, body: dict, x_internal_api_key: str = Header(None)):
            check(x_internal_api_key)
            self.heartbeats.append({"worker_id": worker_id, **body, "at": time.time()})
            return {"ok": True}

        @app.post("/internal/buffer/jobs/claim")
        def claim(body: dict, x_internal_api_key: str = Header(None)):
            check(x_internal_api_key)
            self.claims.append(body["worker_id"])
            return {"job": self.jobs.pop(0) if self.jobs else None}

        @app.post("/internal/buffer/jobs/{buffer_job_id}/status")
        def status(buffer_job_id: str, body: dict, x_internal_api_key: str = Header(None)):
            check(x_internal_api_key)
            self.reports.setdefault(buffer_job_id, []).append(body)
            self.order.append(("status", buffer_job_id, body))
            return {"ok": True}

        @app.post("/internal/videogen/jobs/{musetalk_job_id}/progress")
        def progress(musetalk_job_id: str, body: dict, x_internal_api_key: str = Header(None)):
            check(x_internal_api_key)
            self.progress.setdefault(musetalk_job_id, []).append(body)
            self.order.append(("progress", musetalk_job_id, body))
            return {"ok": True}

        return app

    def final(self, buffer_job_id: str) -> dict | None:
        done = [r for r in self.reports.get(buffer_job_id, []) if r.get("status") in ("succeeded", "failed")]
        return done[-1] if done else None

    def __enter__(self) -> "Orchestrator":
        self.server = ThreadedServer(self.app, self.port).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
