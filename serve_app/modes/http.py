"""The modes that run nothing in-process: http (the APIs only) and queue (Salad's worker calls /generate)."""

from __future__ import annotations


class HttpMode:
    name = "http"
    permanent_failures_answer_200 = False  # /generate: bad input 400, failed generation 500

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class QueueMode(HttpMode):
    """Nothing runs in-process: Salad's worker binary calls /generate. What changes is what it is answered."""

    name = "queue"
    permanent_failures_answer_200 = True
