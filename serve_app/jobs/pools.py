"""Which generator pool a job goes to, when replicas of several widths serve one ingress (`replica_pools`).

Every job is handed to a pool at once (its Serve queue then gives it to the pool's first free replica), so
the choice is the pool that would finish it first: the jobs already sent there and not finished, plus this
one, spread over its replicas, times its seconds per job. Seconds per job are learned from the pool's own
finished jobs; until every pool has finished one, a pool's replicas are taken to be faster by the square
root of their GPU count (two H200s were expected to make a video in about 4.8 s against 7.0 s on one).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field


class PoolLoad(BaseModel):
    """One pool as the router sees it."""

    width: int = Field(description="GPUs a replica")
    replicas: int = Field(ge=1)
    in_flight: int = Field(0, ge=0, description="jobs sent to it and not finished")
    seconds_per_job: float | None = Field(None, description="moving average of its finished jobs; None: none yet")

    def finished(self, seconds: float) -> None:
        self.seconds_per_job = seconds if self.seconds_per_job is None else 0.7 * self.seconds_per_job + 0.3 * seconds


def choose_pool(pools: list[PoolLoad]) -> int:
    """Index of the pool that would finish one more job first (ties: the wider pool, then the first)."""
    learned = all(p.seconds_per_job is not None for p in pools)

    def finish(p: PoolLoad) -> float:
        per_job = p.seconds_per_job if learned else 1 / math.sqrt(p.width)
        return math.ceil((p.in_flight + 1) / p.replicas) * per_job

    return min(range(len(pools)), key=lambda i: (finish(pools[i]), -pools[i].width, i))
