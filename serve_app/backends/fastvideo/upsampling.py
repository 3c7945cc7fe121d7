"""The Wan VAE decoder's upsampling, cheaper and pure torch (no FastVideo import: CI tests it on the CPU).

At 1280x704 each up-block's upsampler makes a 2x nearest copy of up to 4 x 512 x 352 x 640 values and runs a
3x3 conv over it, and its shortcut duplicates the block's input through three full-size copies; in the
profile of a decode these took about 0.5 s of 3.8 (docs/benchmarks.md, run 32). vae.py installs both.
"""

from __future__ import annotations

import contextvars
import functools
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

    compiled: bool = False  # the interleave and the up-block's shortcut add as one compiled kernel

    def forward(self, x):
        folded = getattr(self, "folded_weight", None)
        if folded is None or x.dim() != 4:
            return nn.Sequential.forward(self, x)
        z = F.conv2d(x.contiguous(memory_format=torch.channels_last), folded, self.folded_bias, 1, 1)
        pending = None if torch.compiler.is_compiling() else PENDING_SHORTCUT.get()
        if pending is not None and pending.fits(z, self[1].out_channels):
            add = _compiled_interleave_add() if self.compiled else interleave_and_add_shortcut
            pending.added = True
            return add(z, self[1].out_channels, pending.block_input, pending.dup)
        return _interleave_parities(z, self[1].out_channels)


class PendingShortcut:
    """An up-block's shortcut handed to its upsampler's folded conv, to be added as the parities interleave.

    Stock order: the interleave writes the upsampled tensor (a strided copy), then the block adds the shortcut
    to it (a broadcast add): two eager passes over up to 4 x 512 x 352 x 640 values a chunk, about 0.36 s of a
    1280x704x121 decode on an H200 (run 47). Compiled, the two are one kernel with the same numbers."""

    def __init__(self, block_input: torch.Tensor, dup: nn.Module):
        self.block_input, self.dup, self.added = block_input, dup, False

    def fits(self, z: torch.Tensor, channels: int) -> bool:
        n, m = self.block_input.shape[0], z.shape[0]
        if z.dtype != self.block_input.dtype or m % n:
            return False
        shape = (n, channels, m // n, 2 * (z.shape[2] - 1), 2 * (z.shape[3] - 1))
        return duplicated_view(self.block_input, self.dup, shape) is not None


PENDING_SHORTCUT: contextvars.ContextVar = contextvars.ContextVar("pending_shortcut", default=None)


def interleave_and_add_shortcut(z: torch.Tensor, channels: int, block_input: torch.Tensor, dup) -> torch.Tensor:
    """The parities interleaved (as `_interleave_parities`) plus DupUp3D(block_input), as WanResample's frames
    (M = N x T, C, 2H, 2W), channels-last: the up-block's add, done here. Eager: a copy and an in-place add."""
    y = _interleave_parities(z, channels)
    m, c, h2, w2 = y.shape
    n = block_input.shape[0]
    out = y.view(n, m // n, c, h2, w2).permute(0, 2, 1, 3, 4)  # WanResample's 5-D output, as the block sees it
    view = duplicated_view(block_input, dup, out.shape)
    out.view(view.shape).add_(view)
    return y


def interleave_plus_shortcut(z: torch.Tensor, channels: int, block_input: torch.Tensor, dup) -> torch.Tensor:
    """The same sum written out of place in the output's own (M, 2H, 2W, C) order, for inductor: one kernel that
    reads z and the block input and writes the output once (the in-place form above compiles to a sum in the
    view's order and a transposing copy: two writes)."""
    m, _, h1, w1 = z.shape
    n, h2, w2 = block_input.shape[0], 2 * (h1 - 1), 2 * (w1 - 1)
    y = _interleave_parities(z, channels).permute(0, 2, 3, 1)  # (M, 2H, 2W, C), contiguous
    view = duplicated_view(block_input, dup, (n, channels, m // n, h2, w2))  # (N, C, T, ft, H, fs, W, fs)
    shortcut = view.permute(0, 2, 3, 4, 5, 6, 7, 1).reshape(m, h2, w2, channels)
    return (y + shortcut).permute(0, 3, 1, 2)


@functools.cache
def _compiled_interleave_add():
    return torch.compile(interleave_plus_shortcut, dynamic=False, fullgraph=True)


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
                               (sm, sh, sh + 2 * channels * sc, sw, sw + channels * sc, sc))  # z's own offset
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
