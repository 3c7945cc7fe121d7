"""Frames to MP4 (H.264, yuv420p) and back, in-process through PyAV (no ffmpeg subprocess to fork)."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
from pydantic import BaseModel


class VideoProbe(BaseModel):
    """What a decoded MP4 really holds."""

    codec: str
    pix_fmt: str
    width: int
    height: int
    num_frames: int
    fps: float


def encode_mp4(frames: np.ndarray, fps: int, path: Path, crf: int = 18, preset: str = "veryfast") -> None:
    """Encode (T, H, W, 3) uint8 RGB frames into `path`; H.264 needs even sides, which every model size has."""
    import av

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    _, height, width, _ = frames.shape
    # faststart moves the index to the front so a player can stream from a presigned URL at once
    # (it rewrites the file at close, hence a real file rather than a memory buffer).
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def probe_mp4(data: bytes, decode: bool = True) -> tuple[VideoProbe, np.ndarray | None]:
    """Decode an MP4 fully: its stream facts and (if decode) the RGB frames as (T, H, W, 3) uint8."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        probe = VideoProbe(
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt or "",
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            num_frames=len(frames),
            fps=float(stream.average_rate or stream.guessed_rate or 0),
        )
    return probe, (np.stack(frames) if decode and frames else None)
