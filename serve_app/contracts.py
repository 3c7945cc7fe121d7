"""The messages that cross layers: HTTP -> jobs -> generator deployment -> backend, and back.

One request type (`GenerationParams`), one result type (`VideoResult`: always a finished MP4, whoever
encoded it), the events a generator streams while it works, and what a generator says about itself.
Nothing here imports a layer; every layer imports this.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
    output_width: int | None = Field(None, description="the MP4's width if not `width` (scaled to cover it)")
    output_height: int | None = Field(None, description="the MP4's height if not `height`")
    requested_num_frames: int | None = Field(None, description="what was asked, if the model makes another count")

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the delivered MP4."""
        return self.output_width or self.width, self.output_height or self.height

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one denoising pass."""
        return (self.width, self.height, self.num_frames, self.num_inference_steps, self.guidance_scale,
                self.image_png is not None)


class VideoResult(BaseModel):
    """One finished video: the MP4 and what it cost. Backends encode; the job core only stores bytes."""

    mp4: bytes = Field(repr=False)
    num_frames: int
    height: int = Field(description="of the MP4 (the delivered size)")
    width: int
    seed: int
    generation_sec: float = Field(description="model time, the encode included where it overlapped the decode")
    encode_sec: float = Field(0.0, description="time spent encoding after the model finished")
    peak_vram_gb: float | None = None
    batch_size: int = 1
    stages: dict[str, float] = Field(default_factory=dict, description="seconds per model stage, where known")

    @property
    def size(self) -> tuple[int, int, int]:
        """(frames, height, width)."""
        return self.num_frames, self.height, self.width


class StartedEvent(BaseModel):
    """The generator replica took the batch (it was waiting in a queue until now)."""

    kind: Literal["started"] = "started"
    replica: str = ""
    node: str = Field("", description="the Ray node the replica runs on")
    at: float = Field(description="unix time")


class ProgressEvent(BaseModel):
    kind: Literal["progress"] = "progress"
    step: int
    total: int


class ResultEvent(BaseModel):
    kind: Literal["result"] = "result"
    videos: list[VideoResult]


GeneratorEvent = StartedEvent | ProgressEvent | ResultEvent


class OutOfMemory(RuntimeError):
    """The device (or the host) ran out of memory for this job; the replica itself is fine."""


class JobTimedOut(RuntimeError):
    """The job ran past its time limit and was stopped."""


class BackendInfo(BaseModel):
    backend: str
    model: str
    device: str
    torch_version: str
    cuda_available: bool
    device_name: str
    details: dict = Field(default_factory=dict)


class GeneratorStatus(BaseModel):
    """What a generator replica reports about itself (to /ready, /health and the logs)."""

    state: Literal["loading", "ready", "failed"]
    reason: str | None = None
    info: BackendInfo | None = None
    load_sec: float | None = None
    selfcheck_sec: float | None = None
    ready_at: float | None = None  # Unix time the replica turned ready: what a prober sees later is HTTP's lag
    warmup: Literal["off", "running", "done", "failed"] = "off"
    warmup_sec: float | None = None
    warmup_parts: dict[str, float] = Field(default_factory=dict, description="seconds per warm-up part")
    busy: bool = False

    @property
    def ready(self) -> bool:
        return self.state == "ready"


class GeneratorPool(BaseModel):
    """What the generator replicas last said about themselves (each posts to the board), as one view."""

    replicas: dict[str, GeneratorStatus] = Field(default_factory=dict)
    reason: str | None = Field(None, description="why there is no view (no replica has reported, no answer)")

    def serving(self, after_warmup: bool) -> list[GeneratorStatus]:
        """Replicas that take jobs at full speed (`after_warmup`) or at all."""
        return [s for s in self.replicas.values() if s.ready and not (after_warmup and s.warmup == "running")]

    def representative(self) -> GeneratorStatus:
        """One replica's status to show: a ready one if any, else the most advanced."""
        if not self.replicas:
            return GeneratorStatus(state="loading", reason=self.reason or "no generator replica has reported yet")
        order = {"ready": 0, "loading": 1, "failed": 2}
        return sorted(self.replicas.values(), key=lambda s: (order[s.state], s.warmup == "running"))[0]

    def counts(self) -> dict[str, int]:
        states = [s.state for s in self.replicas.values()]
        return {"replicas": len(states), "ready": states.count("ready"), "loading": states.count("loading"),
                "failed": states.count("failed"), "busy": sum(s.busy for s in self.replicas.values()),
                "warming_up": sum(s.warmup == "running" for s in self.replicas.values())}
