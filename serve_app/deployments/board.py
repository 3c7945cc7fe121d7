"""The board: where each generator replica posts its status, for /ready, /health and /metrics.

A generator replica takes one job at a time (`max_ongoing_requests: 1`, so Serve's router hands a queued
job to the first replica that frees up), which leaves it no room to answer status calls while it works. So
each replica posts its status here whenever it changes and every few seconds; the ingress reads all of them
in one call. A replica that stops posting (gone, or its node gone) drops off after `STALE_S`.
"""

from __future__ import annotations

import time

from ray import serve

from serve_app.contracts import GeneratorStatus

STALE_S = 30.0


@serve.deployment(max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
class GeneratorBoard:
    def __init__(self):
        self.posts: dict[str, tuple[float, GeneratorStatus]] = {}

    def post(self, replica_id: str, status: GeneratorStatus) -> None:
        self.posts[replica_id] = (time.time(), status)

    def leave(self, replica_id: str) -> None:
        self.posts.pop(replica_id, None)

    def read(self) -> dict[str, GeneratorStatus]:
        now = time.time()
        for replica_id in [r for r, (at, _) in self.posts.items() if now - at > STALE_S]:
            del self.posts[replica_id]
        return {replica_id: status for replica_id, (_, status) in self.posts.items()}
