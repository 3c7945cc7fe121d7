"""Which memory profile a card gets: everything on the GPU, or the text encoder in CPU memory (32 GB cards)."""

from __future__ import annotations

from serve_app.hardware import gpu_memory_gb
from serve_app.settings import FastVideoSettings


def memory_profile(settings: FastVideoSettings) -> str:
    """`auto` -> fit-32gb on cards (or caps) of 40 GB or less, speed above (FastWan needs about 30 GB)."""
    if settings.memory_profile != "auto":
        return settings.memory_profile
    memory = settings.gpu_memory_limit_gb or gpu_memory_gb()
    return "fit-32gb" if memory is not None and memory <= 40 else "speed"
