"""The FastVideo versions this backend's patches were written and measured against, checked at start.

The backend changes FastVideo in four places, each in one module: its Ray executor (executor.py), its
pipeline stages (stages.py), its Wan VAE (vae.py) and its DiT attention's compile boundary (dit_compile.py).
They rely on internals that FastVideo may change in any release, so a version outside TESTED fails at load
with a message, not later with a stack trace.
"""

from __future__ import annotations

import importlib.metadata

TESTED = ("0.2.1",)


class UntestedFastVideo(RuntimeError):
    pass


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("fastvideo")
    except importlib.metadata.PackageNotFoundError:
        return None


def check_fastvideo_version(allow_untested: bool = False, version: str | None = None) -> str:
    """The installed version, if this backend was written for it; else UntestedFastVideo (unless allowed)."""
    version = version or installed_version()
    if version is None:
        raise UntestedFastVideo("FastVideo is not installed: `pip install --no-deps fastvideo==0.2.1` "
                                "(see docs/gpu.md), or set FASTWAN_BACKEND=diffusers")
    if version not in TESTED and not allow_untested:
        raise UntestedFastVideo(
            f"FastVideo {version} is installed, but this backend's patches (Ray executor, pipeline stages, Wan VAE) "
            f"were written and tested against FastVideo {', '.join(TESTED)}. Install that version "
            f"(`pip install --no-deps fastvideo=={TESTED[-1]}`), or set FASTWAN_FASTVIDEO_ALLOW_UNTESTED=true "
            "to try this one anyway")
    return version
