"""Admission: at most `max_pending_jobs` queued + running jobs per ingress replica, exactly, under any burst.

A slot is taken synchronously (no await between the check and the count), before any storage write, and
given back if the job is not accepted after all. A refusal says when to come back (`Retry-After`): the
excess over the limit divided by the rate at which this replica has been finishing jobs lately.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque

from serve_app.jobs.errors import Saturated

RATE_WINDOW = 32  # finishes remembered for the drain rate
RATE_MAX_AGE_S = 300.0  # older finishes say nothing about now


class Admission:
    def __init__(self, limit: int, runner):
        self.limit = limit
        self.runner = runner  # its live jobs are the accepted, unfinished ones; it knows if we are draining
        self.reserved = 0
        self.finished: deque[float] = deque(maxlen=RATE_WINDOW)
        self.seconds_per_job = 10.0  # before any job has finished

    @property
    def pending(self) -> int:
        return len(self.runner.live) + self.reserved

    @property
    def saturated(self) -> bool:
        return self.pending >= self.limit

    def note_finished(self, generation_sec: float | None = None) -> None:
        self.finished.append(time.monotonic())
        if generation_sec:
            self.seconds_per_job = 0.8 * self.seconds_per_job + 0.2 * generation_sec

    def drain_rate(self) -> float:
        """Jobs finished per second lately (the recent finishes), or the inverse of the time per job."""
        now = time.monotonic()
        recent = [t for t in self.finished if now - t <= RATE_MAX_AGE_S]
        if len(recent) >= 2 and recent[-1] > recent[0]:
            return (len(recent) - 1) / (recent[-1] - recent[0])
        return 1.0 / max(self.seconds_per_job, 0.01)

    def retry_after_s(self) -> int:
        excess = max(1, self.pending - self.limit + 1)
        return int(min(600, max(1, math.ceil(excess / self.drain_rate()))))

    def check(self) -> None:
        if self.runner.draining:
            raise Saturated("this replica is shutting down; retry (another replica will take it)", 5)
        if self.saturated:
            wait = self.retry_after_s()
            raise Saturated(f"{self.pending} jobs are pending (limit {self.limit}); retry after about {wait} s", wait)

    @contextlib.contextmanager
    def slot(self):
        """Hold one of the limited slots while a job is being accepted (the runner's live count takes over)."""
        self.check()
        self.reserved += 1
        try:
            yield
        finally:
            self.reserved -= 1
