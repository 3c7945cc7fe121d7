"""The small interface every model backend meets, and the messages that cross the ingress/generator line.

A backend is LitServe-small: `load()` once, `generate(batch)` many times, `info()` to describe itself,
`check()` for health. Videos leave the model's device as uint8 YUV 4:2:0 (what H.264 stores): 1.5
bytes a pixel on the wire instead of 12 for fp32 RGB, and no colour conversion left for the encoder.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

ProgressCallback = Callable[[int, int], None]
"""Called by a backend as `(steps_done, steps_total)` while it denoises."""


class GenerationParams(BaseModel):
    """One video to make, fully resolved (no defaults left to guess)."""

    model_config = ConfigDict(frozen=True)

    prompt: str
    negative_prompt: str = ""
    width: int
    height: int
    num_frames: int
    fps: int
    num_inference_steps: int
    guidance_scale: float
    seed: int
    image_png: bytes | None = Field(None, repr=False, description="reference image, already resized/cropped")

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one denoising pass."""
        return (self.width, self.height, self.num_frames, self.num_inference_steps, self.guidance_scale,
                self.image_png is not None)


class GeneratedVideo(BaseModel):
    """One finished video, as uint8 frames or as a finished MP4, plus what it cost.

    `yuv420p` frames are I420 planes, (T, H * 3 // 2, W); `rgb24` frames are (T, H, W, 3). A backend
    that encodes while it decodes (FastVideo in its GPU worker) sends `mp4` and `shape` instead.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    frames: np.ndarray | None = None
    pixel_format: Literal["yuv420p", "rgb24"] = "yuv420p"
    mp4: bytes | None = Field(None, repr=False, description="the encoded video, when the backend encoded it")
    shape: tuple[int, int, int] | None = Field(None, description="(frames, height, width) of `mp4`")
    seed: int
    generation_sec: float
    peak_vram_gb: float | None = None
    batch_size: int = 1
    stages: dict[str, float] = Field(default_factory=dict, description="seconds per model stage, where known")

    @model_validator(mode="after")
    def _one_payload(self):
        if (self.frames is None) == (self.mp4 is None) or (self.mp4 is not None and self.shape is None):
            raise ValueError("a GeneratedVideo carries either frames, or an mp4 with its shape")
        return self

    @property
    def size(self) -> tuple[int, int, int]:
        """(frames, height, width)."""
        if self.frames is None:
            return self.shape
        if self.pixel_format == "rgb24":
            return self.frames.shape[0], self.frames.shape[1], self.frames.shape[2]
        return self.frames.shape[0], self.frames.shape[1] * 2 // 3, self.frames.shape[2]


class ProgressEvent(BaseModel):
    kind: Literal["progress"] = "progress"
    step: int
    total: int


class ResultEvent(BaseModel):
    kind: Literal["result"] = "result"
    videos: list[GeneratedVideo]


class BackendInfo(BaseModel):
    backend: str
    model: str
    device: str
    torch_version: str
    cuda_available: bool
    device_name: str
    details: dict = Field(default_factory=dict)


class Backend(abc.ABC):
    """Load once, then generate batches of compatible requests."""

    name: str = "base"

    @abc.abstractmethod
    def load(self) -> None: ...

    @abc.abstractmethod
    def generate(self, batch: list[GenerationParams], on_progress: ProgressCallback) -> list[GeneratedVideo]:
        """Make one video per request, each with its own seed; all requests share `batch_key()`."""

    @abc.abstractmethod
    def info(self) -> BackendInfo: ...

    def check(self) -> None:
        """Raise if the backend can no longer generate (lost device, dead worker)."""

    def eager(self):
        """A context for the self-check: no torch.compile or autotuning for its throwaway shape."""
        return contextlib.nullcontext()

    def warmup_params(self, settings) -> list[GenerationParams]:
        """Requests that prepare the common shapes after start-up (compiles, autotuning); none by default."""
        return []

    def close(self) -> None:
        """Free the device; called when the replica stops."""
