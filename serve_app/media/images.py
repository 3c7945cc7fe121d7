"""Reference images: read from an upload, a data URL or an http(s) URL, then fit to the video size.

Fitting follows Wan2.2 TI2V: scale the image so it covers the output frame (keeping its aspect
ratio), then crop the centre to exactly width x height. Nothing is stretched or padded.
"""

from __future__ import annotations

import base64
import binascii
import io

from serve_app.media.fetch import FetchPolicy, fetch_url

ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "GIF"}


class ImageError(ValueError):
    """The reference image cannot be used; the message says why, for the client."""


def decode_data_url(url: str, max_bytes: int) -> bytes:
    """`data:image/png;base64,....` -> bytes."""
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise ImageError("data URL must look like data:image/png;base64,<data>")
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageError(f"image is larger than {max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"data URL is not valid base64: {exc}") from None


async def read_image_reference(reference: str, policy: FetchPolicy) -> bytes:
    """Bytes of an image given as a data URL or an http(s) URL."""
    if reference.startswith("data:"):
        return decode_data_url(reference, policy.max_bytes)
    return await fetch_url(reference, policy)


def prepare_image(data: bytes, width: int, height: int, max_pixels: int) -> bytes:
    """Decode, check, cover-resize and centre-crop to (width, height); returns PNG bytes."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            w, h = probe.size
    except (UnidentifiedImageError, OSError):
        raise ImageError("input image could not be decoded; send a PNG, JPEG or WebP") from None
    if fmt not in ALLOWED_FORMATS:
        raise ImageError(f"image format {fmt} is not accepted; send one of {sorted(ALLOWED_FORMATS)}")
    if w * h > max_pixels:
        raise ImageError(f"image has {w}x{h} pixels; the limit is {max_pixels} pixels")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
    except OSError as exc:
        raise ImageError(f"input image is damaged: {exc}") from None
    scale = max(width / img.width, height / img.height)
    resized = img.resize((max(width, round(img.width * scale)), max(height, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    out = io.BytesIO()
    resized.crop((left, top, left + width, top + height)).save(out, format="PNG")
    return out.getvalue()


def solid_png(width: int, height: int, color: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    """A one-colour PNG: the warm-up's reference image, and a test image for benchmarks."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()
