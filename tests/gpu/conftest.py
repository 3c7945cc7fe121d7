"""GPU tests: they need CUDA and FastVideo, and skip cleanly elsewhere (CI has neither)."""

import importlib.util

import pytest


def _gpu_ready() -> str | None:
    if importlib.util.find_spec("fastvideo") is None:
        return "FastVideo is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _gpu_ready()
    for item in items:
        if "tests/gpu/" in str(item.fspath):
            item.add_marker(pytest.mark.gpu)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
