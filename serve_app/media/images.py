"""Reference images: read from an upload, a data URL or an http(s) URL, then fit to the video size.

Fitting follows Wan2.2 TI2V: the image covers the output frame (keeping its aspect ratio) and the centre
is kept, at exactly width x height. Nothing is stretched or padded.
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
        raise ImageError(f"image is larger than {max_bytes} bytes (setting image_max_bytes)")
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
    """Decode, check, centre-crop to the frame's aspect and resize to exactly (width, height); PNG bytes.

    Memory stays bounded whatever the image's shape: its size is checked from the header before anything
    is decoded, the crop is taken in the image's own pixels and mode (a 1-bit image stays 1-bit), and only
    that crop is converted and resized, so no step holds more than the image itself and the output frame.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (w, h) = img.format, img.size
            if fmt not in ALLOWED_FORMATS:
                raise ImageError(f"image format {fmt} is not accepted; send one of {sorted(ALLOWED_FORMATS)}")
            if w < 1 or h < 1 or w * h > max_pixels:
                raise ImageError(f"image is {w}x{h} ({w * h:,} pixels); the limit is {max_pixels:,} pixels "
                                 "(setting image_max_pixels): send a smaller image")
            box = _cover_box(w, h, width, height)
            frame = img.crop(box).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"image has more pixels than the limit of {max_pixels:,} (setting image_max_pixels): "
                         "send a smaller image") from None
    except (UnidentifiedImageError, SyntaxError):
        raise ImageError("input image could not be decoded; send a PNG, JPEG or WebP") from None
    except (OSError, ValueError, OverflowError, MemoryError) as exc:
        raise ImageError(f"input image could not be decoded ({type(exc).__name__}): send a PNG, JPEG or WebP "
                         "of ordinary proportions") from None
    out = io.BytesIO()
    frame.save(out, format="PNG")
    return out.getvalue()


def _cover_box(w: int, h: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The centred region of a w x h image with the frame's aspect: what a cover-resize would keep."""
    if w * height > h * width:  # wider than the frame: keep the full height
        crop_w, crop_h = max(1, round(h * width / height)), h
    else:
        crop_w, crop_h = w, max(1, round(w * height / width))
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def solid_png(width: int, height: int, color: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    """A one-colour PNG: the warm-up's reference image, and a test image for benchmarks."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()
