"""Which queued requests may share one trip to the generator."""

from __future__ import annotations

from pydantic import BaseModel

from serve_app.backends.base import GenerationParams


class WorkItem(BaseModel):
    """One job's request as the ingress batcher sees it."""

    job_id: str
    params: GenerationParams


def group_compatible(items: list[WorkItem]) -> list[list[int]]:
    """Indices of `items` grouped by `GenerationParams.batch_key()`, first-come order kept in and across groups."""
    groups: dict[tuple, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item.params.batch_key(), []).append(index)
    return list(groups.values())
