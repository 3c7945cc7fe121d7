"""What the job core raises; the HTTP layer maps each to a status code (api/errors.py)."""

from __future__ import annotations


class JobNotFound(LookupError):
    pass


class JobConflict(RuntimeError):
    """The job is not in a state that allows this operation."""


class IdempotencyConflict(JobConflict):
    """The idempotency key was used before with a different request."""


class Saturated(RuntimeError):
    """Too many jobs pending on this replica; `retry_after_s` estimates when a slot frees up."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class JobCancelled(RuntimeError):
    """The job was cancelled before a generator took it."""


REPLICA_LOST = ("ActorDiedError", "RayActorError", "ActorUnavailableError", "ActorUnschedulableError",
                "WorkerCrashedError", "NodeDiedError")


def replica_lost(exc: BaseException) -> bool:
    """The generator replica died under the job (retry it), as opposed to the job failing."""
    names = {type(e).__name__ for e in (exc, exc.__cause__) if e is not None}
    return bool(names & set(REPLICA_LOST)) or any(n in str(exc) for n in REPLICA_LOST)
