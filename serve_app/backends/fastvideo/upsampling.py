"""The Wan VAE decoder's upsampling, cheaper and pure torch (no FastVideo import: CI tests it on the CPU).

At 1280x704 each up-block's upsampler makes a 2x nearest copy of up to 4 x 512 x 352 x 640 values and runs a
3x3 conv over it, and its shortcut duplicates the block's input through three full-size copies; in the
profile of a decode these took about 0.5 s of 3.8 (docs/benchmarks.md, run 32). vae.py installs both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SubPixelUpsampleConv(nn.Sequential):
    """WanResample's `Sequential(upsample 2x nearest, conv 3x3 padding 1)` as one 2x2 conv at the input's size.

    Output pixel (2h+a, 2w+b) of the stock pair reads the input at rows h-1+a..h+a and columns w-1+b..w+b only,
    with the 3x3 taps that land on the same input pixel added up: a 2x2 kernel per parity (a, b). The four
    kernels are one conv with 4x the output channels, over the input padded by one (output (H+1) x (W+1)); the
    parities are then interleaved into the 2H x 2W output. Children and parameter names are the stock ones."""

    def forward(self, x):
        folded = getattr(self, "folded_weight", None)
        if folded is None or x.dim() != 4:
            return nn.Sequential.forward(self, x)
        z = F.conv2d(x.contiguous(memory_format=torch.channels_last), folded, self.folded_bias, 1, 1)
        return _interleave_parities(z, self[1].out_channels)


_PARITY_TAPS = ((0, 1, 1), (0, 0, 1))  # 3x3 tap -> 2x2 tap: for parity 0, taps (0 | 1, 2); for parity 1, (0, 1 | 2)


def fold_upsample_conv(pair: nn.Sequential) -> bool:
    """Give a stock upsample + conv pair the folded 2x2 weights (non-persistent buffers) and the class above;
    False (unchanged) where the pair is not a 2x nearest upsampling and a 3x3, padding 1, stride 1 conv."""
    if len(pair) != 2 or not isinstance(pair[0], nn.Upsample) or not isinstance(pair[1], nn.Conv2d):
        return False
    up, conv = pair
    scale = up.scale_factor if isinstance(up.scale_factor, tuple) else (up.scale_factor,) * 2
    if (up.mode not in ("nearest", "nearest-exact") or tuple(float(f) for f in scale) != (2.0, 2.0)
            or conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1)
            or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros"):
        return False
    w = conv.weight.detach().double()  # the taps added exactly, then rounded once to the weight's dtype
    combine = torch.zeros(2, 2, 3, device=w.device, dtype=w.dtype)  # parity, 2x2 tap, 3x3 tap
    for parity, taps in enumerate(_PARITY_TAPS):
        for tap3, tap2 in enumerate(taps):
            combine[parity, tap2, tap3] = 1.0
    folded = torch.einsum("aki,ocij,blj->abockl", combine, w, combine)  # (2, 2, Cout, Cin, 2, 2)
    folded = folded.reshape(-1, *folded.shape[3:]).to(conv.weight.dtype)
    bias = conv.bias.detach().repeat(4) if conv.bias is not None else None
    pair.register_buffer("folded_weight", folded.contiguous(memory_format=torch.channels_last), persistent=False)
    pair.register_buffer("folded_bias", bias, persistent=False)
    pair.__class__ = SubPixelUpsampleConv
    return True


def _interleave_parities(z: torch.Tensor, channels: int) -> torch.Tensor:
    """(M, 4C, H+1, W+1), channels (a, b, c), channels-last -> (M, C, 2H, 2W) with y[2h+a, 2w+b] = z[(a,b), h+a, w+b]."""
    m, _, h1, w1 = z.shape
    sm, sc, sh, sw = z.stride()
    parity_view = z.as_strided((m, h1 - 1, 2, w1 - 1, 2, channels),
                               (sm, sh, sh + 2 * channels * sc, sw, sw + channels * sc, sc), z.storage_offset())
    return parity_view.reshape(m, 2 * (h1 - 1), 2 * (w1 - 1), channels).permute(0, 3, 1, 2)


def duplicated_view(x: torch.Tensor, dup: nn.Module, out_shape) -> torch.Tensor | None:
    """DupUp3D(x) as a broadcast view shaped (N, Cout, T, ft, H, fs, W, fs), or None where no such view exists.

    DupUp3D repeats each channel r times and reads the repeated channels as (Cout, ft, fs, fs): output channel o
    at sub-position (i, j, k) is input channel (o * g + lead) where the trailing sub-positions whose sizes
    multiply to r repeat and the leading ones (product g) pick the channel."""
    n, cin, t, h, w = x.shape
    digits, r, cout = (dup.factor_t, dup.factor_s, dup.factor_s), dup.repeats, dup.out_channels
    if tuple(out_shape) != (n, cout, t * digits[0], h * digits[1], w * digits[2]):
        return None
    split = next((p for p in range(4) if math.prod(digits[p:]) == r), None)
    if split is None or cout * math.prod(digits[:split]) != cin:
        return None
    v = x.view(n, cout, *digits[:split], t, h, w)
    for _ in range(3 - split):
        v = v.unsqueeze(-1)
    sub = [2 + q if q < split else 5 + q for q in range(3)]  # axis of sub-position i, j, k in v
    t_axis = 2 + split
    v = v.permute(0, 1, t_axis, sub[0], t_axis + 1, sub[1], t_axis + 2, sub[2])
    return v.expand(n, cout, t, digits[0], h, digits[1], w, digits[2])
