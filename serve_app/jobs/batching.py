"""Which queued requests may share one trip to the generator."""

from __future__ import annotations

from serve_app.contracts import GenerationParams


def group_compatible(requests: list[GenerationParams]) -> list[list[int]]:
    """Indices of `requests` grouped by `GenerationParams.batch_key()`, first-come order kept in and across groups."""
    groups: dict[tuple, list[int]] = {}
    for index, params in enumerate(requests):
        groups.setdefault(params.batch_key(), []).append(index)
    return list(groups.values())
