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


BT709 = "colorprim=bt709:transfer=bt709:colormatrix=bt709"  # what serve_app.media.yuv produces


def encode_mp4(frames: np.ndarray, fps: int, path: Path, crf: int = 18, preset: str = "veryfast",
               pixel_format: str = "yuv420p") -> None:
    """Encode uint8 frames into `path` as H.264 yuv420p, tagged BT.709 limited range.

    `yuv420p`: I420 planes (T, H * 3 // 2, W), as the backends deliver them (no conversion here).
    `rgb24`: (T, H, W, 3), converted with BT.709 by swscale. Sides must be even (every model size is).
    """
    import av

    if frames.dtype != np.uint8 or not (
            (pixel_format == "rgb24" and frames.ndim == 4 and frames.shape[-1] == 3)
            or (pixel_format == "yuv420p" and frames.ndim == 3 and frames.shape[1] % 3 == 0)):
        raise ValueError(f"expected uint8 {pixel_format} frames, got {frames.shape} {frames.dtype}")
    height = frames.shape[1] if pixel_format == "rgb24" else frames.shape[1] * 2 // 3
    width = frames.shape[2]
    # faststart moves the index to the front so a player can stream from a presigned URL at once
    # (it rewrites the file at close, hence a real file rather than a memory buffer).
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset, "x264-params": BT709}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format=pixel_format)
            if pixel_format == "rgb24":
                frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709")
            container.mux(stream.encode(frame))
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
