"""What this machine has: GPU memory (through NVML, which needs no GPU in this process) and host memory."""

from __future__ import annotations

import os


def gpu_memory_gb() -> float | None:
    """Memory of the node's first GPU: the Ray-executor replica itself holds no GPU, so NVML, then torch."""
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


def host_memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None
