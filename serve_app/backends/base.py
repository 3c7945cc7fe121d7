"""The small interface every model backend meets.

A backend is LitServe-small: `load()` once, `generate(batch)` many times, `info()` to describe itself,
`check()` for health. It returns finished MP4s (`VideoResult`), so whoever calls it only stores bytes.
Frames leave the model's device as uint8 YUV 4:2:0 (what H.264 stores), converted where they were made.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable

from serve_app.contracts import BackendInfo, GenerationParams, VideoResult
from serve_app.settings import GenerationSettings, ModelSettings

ProgressCallback = Callable[[int, int], None]
"""Called by a backend as `(steps_done, steps_total)` while it denoises."""


class Backend(abc.ABC):
    """Load once, then generate batches of compatible requests."""

    name: str = "base"
    batches: bool = False
    """True if one call with several requests is faster than one call each (the dispatcher then batches)."""

    def __init__(self, models: ModelSettings, generation: GenerationSettings):
        self.models = models
        self.generation = generation

    @abc.abstractmethod
    def load(self) -> None: ...

    @abc.abstractmethod
    def generate(self, batch: list[GenerationParams], on_progress: ProgressCallback) -> list[VideoResult]:
        """Make one video per request, each with its own seed; all requests share `batch_key()`."""

    @abc.abstractmethod
    def info(self) -> BackendInfo: ...

    def check(self) -> None:
        """Raise if the backend can no longer generate (lost device, dead worker)."""

    def eager(self):
        """A context for the self-check: no torch.compile or autotuning for its throwaway shape."""
        return contextlib.nullcontext()

    def warm_up(self) -> dict:
        """Prepare the common shapes after start-up (compiles, autotuning): by default, one video of each of
        `warmup_params`. Returns seconds per part."""
        import time

        timings = {}
        for params in self.warmup_params():
            start = time.perf_counter()
            video = self.generate([params], lambda *_: None)[0]
            if video.size != (params.num_frames, params.height, params.width):  # it may stand in for the self-check
                raise RuntimeError(f"the warm-up produced a {video.size} video for {params.width}x{params.height}"
                                   f"x{params.num_frames}")
            timings[f"{params.width}x{params.height}x{params.num_frames}"] = round(time.perf_counter() - start, 2)
        return timings

    def warmup_params(self) -> list[GenerationParams]:
        """Requests that prepare the common shapes after start-up (compiles, autotuning); none by default."""
        return []

    def close(self) -> None:
        """Free the device; called when the replica stops."""
