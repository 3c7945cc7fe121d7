"""Which memory profile a card gets: everything on the GPU, or the text encoder in CPU memory (32 GB cards)."""

from __future__ import annotations

from serve_app.settings import FastVideoSettings


def gpu_memory_gb() -> float | None:
    """Memory of the node's first GPU, read through NVML: the Ray-executor replica itself holds no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total / 1e9
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML: fall back to torch, then to unknown
        try:
            import torch

            return torch.cuda.get_device_properties(0).total_memory / 1e9 if torch.cuda.is_available() else None
        except Exception:  # noqa: BLE001
            return None


def memory_profile(settings: FastVideoSettings) -> str:
    """`auto` -> fit-32gb on cards (or caps) of 40 GB or less, speed above (FastWan needs about 30 GB)."""
    if settings.memory_profile != "auto":
        return settings.memory_profile
    memory = settings.gpu_memory_limit_gb or gpu_memory_gb()
    return "fit-32gb" if memory is not None and memory <= 40 else "speed"
