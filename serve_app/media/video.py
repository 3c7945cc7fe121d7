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


class Mp4Writer:
    """Incremental H.264 MP4 writer: frames go in as they are made, the file is complete only after close().

    uint8 frames, tagged BT.709 limited range. `yuv420p`: I420 planes (T, H * 3 // 2, W), as the
    backends deliver them (no conversion here). `rgb24`: (T, H, W, 3), converted with BT.709 by
    swscale. Sides must be even (every model size is). faststart moves the index to the front so a
    player can stream from a presigned URL at once (it rewrites the file at close, hence a real file).
    """

    def __init__(self, path: Path, fps: int, crf: int = 18, preset: str = "veryfast"):
        self.path, self.fps, self.crf, self.preset = Path(path), fps, crf, preset
        self.container = self.stream = None
        self.frames_written = 0

    def write(self, frames: np.ndarray, pixel_format: str = "yuv420p") -> None:
        import av

        if frames.dtype != np.uint8 or not (
                (pixel_format == "rgb24" and frames.ndim == 4 and frames.shape[-1] == 3)
                or (pixel_format == "yuv420p" and frames.ndim == 3 and frames.shape[1] % 3 == 0)):
            raise ValueError(f"expected uint8 {pixel_format} frames, got {frames.shape} {frames.dtype}")
        if self.container is None:
            height = frames.shape[1] if pixel_format == "rgb24" else frames.shape[1] * 2 // 3
            self.container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
            self.stream = self.container.add_stream("libx264", rate=Fraction(self.fps))
            self.stream.width, self.stream.height, self.stream.pix_fmt = frames.shape[2], height, "yuv420p"
            self.stream.options = {"crf": str(self.crf), "preset": self.preset, "x264-params": BT709}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format=pixel_format)
            if pixel_format == "rgb24":
                frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709")
            self.container.mux(self.stream.encode(frame))
            self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (raises if nothing was written)."""
        if self.container is None:
            raise ValueError("no frames were written")
        try:
            self.container.mux(self.stream.encode())
        finally:
            self.container.close()
            self.container = None

    def abort(self) -> None:
        """Drop a half-written file."""
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - the file is deleted either way
                pass
            self.container = None
        self.path.unlink(missing_ok=True)


def encode_mp4(frames: np.ndarray, fps: int, path: Path, crf: int = 18, preset: str = "veryfast",
               pixel_format: str = "yuv420p") -> None:
    """Encode all `frames` into `path` (see Mp4Writer for the formats)."""
    writer = Mp4Writer(path, fps, crf, preset)
    try:
        writer.write(frames, pixel_format)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def encode_mp4_bytes(frames: np.ndarray, fps: int, crf: int = 18, preset: str = "veryfast",
                     pixel_format: str = "yuv420p") -> bytes:
    """`encode_mp4` into memory (through a temporary file: faststart rewrites the file at close)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fastwan-") as tmp:
        path = Path(tmp) / "video.mp4"
        encode_mp4(frames, fps, path, crf, preset, pixel_format)
        return path.read_bytes()


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
