"""FastVideo's own code on the CPU: tiny random shapes, and gloo processes for what runs over two GPUs.

`make test` installs FastVideo without its dependencies (these import its modules; none runs its CUDA pipeline),
so they run in CI. Without FastVideo they are skipped, unless FASTWAN_REQUIRE_FASTVIDEO=1 (CI sets it): then they fail.
"""

import importlib.util
import os

import pytest


@pytest.fixture(autouse=True)
def fastvideo_installed():
    if importlib.util.find_spec("fastvideo") is None:
        message = "FastVideo is not installed (make test installs it: requirements/fastvideo.txt, --no-deps)"
        if os.environ.get("FASTWAN_REQUIRE_FASTVIDEO") == "1":
            pytest.fail(message)
        pytest.skip(message)
