"""Reference images for the tests (a red one unless told otherwise)."""

from serve_app.media.images import solid_png


def png_bytes(width: int = 96, height: int = 64, color=(200, 30, 30)) -> bytes:
    return solid_png(width, height, color)
