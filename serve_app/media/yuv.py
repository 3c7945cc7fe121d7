"""RGB video -> YUV 4:2:0 (I420) uint8 on the device that made it.

H.264 stores yuv420p, so converting where the video already is (the GPU) halves the bytes that
cross process boundaries (1.5 instead of 3 per pixel) and spares the CPU encoder its colour
conversion. BT.709, limited range; the MP4 is tagged the same way, so players show the colours
that were generated.
"""

from __future__ import annotations

# BT.709 limited range: Y in [16, 235], Cb/Cr in [16, 240], from R, G, B in [0, 1].
Y = (0.2126 * 219, 0.7152 * 219, 0.0722 * 219)
CB = (-0.2126 / 1.8556 * 224, -0.7152 / 1.8556 * 224, 0.5 * 224)
CR = (0.5 * 224, -0.7152 / 1.5748 * 224, -0.0722 / 1.5748 * 224)


def rgb_to_i420(video):
    """(B, T, 3, H, W) float in [0, 1] (any device) -> (B, T, H * 3 // 2, W) uint8 I420 planes, same device.

    Each frame is laid out as PyAV's `VideoFrame.from_ndarray(format="yuv420p")` expects: the Y plane
    (H rows), then U and V (H/2 x W/2 each) packed row-pairs into W-wide rows.
    """
    import torch

    with torch.inference_mode():
        v = video.float().clamp(0, 1)
        r, g, b = v[:, :, 0], v[:, :, 1], v[:, :, 2]
        y = 16 + Y[0] * r + Y[1] * g + Y[2] * b
        # 4:2:0: average each 2x2 block of RGB, then convert (what an encoder's chroma filter does)
        pooled = torch.nn.functional.avg_pool2d(v.flatten(0, 1), 2).unflatten(0, v.shape[:2])
        pr, pg, pb = pooled[:, :, 0], pooled[:, :, 1], pooled[:, :, 2]
        u = 128 + CB[0] * pr + CB[1] * pg + CB[2] * pb
        w = 128 + CR[0] * pr + CR[1] * pg + CR[2] * pb
        bsz, t, h, width = y.shape
        chroma = torch.stack([u, w], dim=2).reshape(bsz, t, h // 2, width)  # U rows then V rows
        out = torch.cat([y, chroma], dim=2)
        return out.round_().clamp_(0, 255).to(torch.uint8)


def fit_video(video, width: int, height: int):
    """(B, T, 3, H, W) floats in [0, 1] -> (B, T, 3, height, width): scaled to cover the frame, the centre kept.

    The model makes multiples of 32; a request for another size gets exactly its size this way, with nothing
    stretched. Bicubic with antialiasing (a downscale does not alias), on the device the video is on.
    """
    import torch

    b, t, c, h, w = video.shape
    if (w, h) == (width, height):
        return video
    scale = max(width / w, height / h)
    sw, sh = max(width, round(w * scale)), max(height, round(h * scale))
    with torch.inference_mode():
        x = torch.nn.functional.interpolate(video.flatten(0, 1).float(), size=(sh, sw), mode="bicubic",
                                            antialias=True, align_corners=False)
        top, left = (sh - height) // 2, (sw - width) // 2
        return x[:, :, top:top + height, left:left + width].clamp_(0, 1).unflatten(0, (b, t))
