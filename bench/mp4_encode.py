"""The MP4 encode of one 1280x704x121 video on this machine's CPU, by content and x264 preset.

With the light decoder the frames are ready in a tenth of a second, so the encode is no longer hidden
behind the decode: its time is the fast profile's tail. Random weights make flat frames (cheap to
encode); real videos cost more, noise the most. This bounds the tail for real content: `natural`
is smooth moving colour with fine texture, `noise` is the worst case. The service's own encoder
(Mp4Writer, I420 in, crf 18).

    python bench/mp4_encode.py --out $OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serve_app.media.video import Mp4Writer  # noqa: E402

W, H, T = 1280, 704, 121


def frames(kind: str) -> np.ndarray:
    """(T, H * 3 // 2, W) I420 frames of one kind of content."""
    rng = np.random.default_rng(0)
    if kind == "noise":
        return rng.integers(0, 256, (T, H * 3 // 2, W), dtype=np.uint8)
    if kind == "flat":
        return np.full((T, H * 3 // 2, W), 128, np.uint8)
    y, x = np.mgrid[0:H * 3 // 2, 0:W].astype(np.float32)
    texture = rng.normal(0, 6, (H * 3 // 2, W)).astype(np.float32)
    out = np.empty((T, H * 3 // 2, W), np.uint8)
    for t in range(T):  # a drifting colour field and a texture that pans with it
        field = 128 + 60 * np.sin((x + 4 * t) / 97) * np.cos((y - 2 * t) / 61)
        out[t] = np.clip(field + np.roll(texture, 4 * t, axis=1), 0, 255)
    return out


def encode_s(video: np.ndarray, preset: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.mp4"
        start = time.perf_counter()
        writer = Mp4Writer(path, 24, 18, preset)
        for chunk in np.array_split(video, 31):  # as the worker hands them over: one latent frame at a time
            writer.write(chunk)
        writer.close()
        return time.perf_counter() - start, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--presets", default="veryfast superfast ultrafast")
    args = parser.parse_args()
    rows, result = ["| content | preset | encode s | MB |", "|---|---|---|---|"], {}
    for kind in ("flat", "natural", "noise"):
        video = frames(kind)
        for preset in args.presets.split():
            seconds, size = encode_s(video, preset)
            result[f"{kind}/{preset}"] = {"seconds": round(seconds, 2), "bytes": size}
            rows.append(f"| {kind} | {preset} | {seconds:.2f} | {size / 1e6:.1f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mp4_encode.json").write_text(json.dumps(result, indent=2))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
