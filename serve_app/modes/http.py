"""The modes that run nothing in-process: http (the APIs only) and queue (Salad's worker calls /generate)."""

from __future__ import annotations


class HttpMode:
    name = "http"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class QueueMode(HttpMode):
    """Nothing runs in-process: the Salad job-queue worker binary (the container entrypoint starts it) calls
    /generate, which answers as the old worker did in every mode (modes/contract.py)."""

    name = "queue"
