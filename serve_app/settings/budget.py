"""The size budget of one video on a device: how many pixel-frames fit (`max_pixel_frames` when left to auto)."""

from __future__ import annotations

DEFAULT_VIDEO = 1280 * 704 * 121  # FastWan's own size: 109 M pixel-frames


def pixel_frame_budget(on_gpu: bool, gpu_memory_gb: float | None, host_memory_gb: float | None) -> int:
    """How large a video may be (width x height x frames) on this device, with room to spare.

    GPU: a 32 GB card holds FastWan's default 1280x704x121 with the fit-32gb profile, so cards of 40 GB or
    less (and unknown ones) take that size, 96 GB cards twice it and larger ones four times. CPU: the tiny
    model needs about 20 bytes a pixel-frame; a quarter of the host's memory (at most 8 GB) is the budget.
    """
    if on_gpu:
        memory = gpu_memory_gb or 0
        return DEFAULT_VIDEO * (4 if memory > 96 else 2 if memory > 40 else 1)
    budget = min(8.0, (host_memory_gb or 8.0) / 4)
    return int(budget * 1e9 / 20)
