"""A small orchestrator speaking the old worker's buffer protocol, for the buffer-mode tests."""

from __future__ import annotations

import threading
import time

from fastapi import FastAPI, Header, HTTPException

from devtools.procs import free_port

KEY = "orchestrator-secret"


class Orchestrator:
    def __init__(self, jobs: list[dict]):
        self.jobs = list(jobs)
        self.heartbeats: list[dict] = []
        self.claims: list[str] = []
        self.reports: dict[str, list[dict]] = {}
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
            return {"ok": True}

        return app

    def final(self, buffer_job_id: str) -> dict | None:
        done = [r for r in self.reports.get(buffer_job_id, []) if r.get("status") in ("succeeded", "failed")]
        return done[-1] if done else None

    def __enter__(self) -> "Orchestrator":
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
