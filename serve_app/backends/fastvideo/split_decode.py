"""One video's Wan VAE decode over a replica's GPUs: each decodes a band of columns, the first gathers them.

With `gpus_per_replica` > 1 the DiT is split by sequence, but the decode (half of a video's time) would run on
the first GPU alone. Here every GPU runs the decoder's input conv and mid block on the whole latent frame (its
attention spans the frame; at latent resolution this is cheap), then the up-blocks and the head on its own band
of latent columns widened by a halo on each side, and keeps the band's own columns. The halo covers how far a
value travels sideways through the rest of the decoder (one pixel per 3x3 conv at its own resolution, counted
from the modules: 12.25 latent columns for Wan 2.2's decoder, so 13), so the kept columns see exactly the values
a whole-frame decode gives them (to conv-algorithm rounding). Every GPU keeps its own causal caches; per chunk,
the kept bands are all-gathered and the first GPU delivers the whole frame. Two GPUs: 53 of 80 columns each.
No communication inside the decoder, one gather of a few MB per chunk.
Imports fastvideo's Wan VAE only through the decoder passed in (no import here).
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Band:
    """Latent columns [start, stop) decoded; [keep_start, keep_stop) of them kept (absolute columns)."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


@functools.cache  # per decoder: its modules do not change after the start
def decoder_halo(decoder: nn.Module) -> int:
    """Latent columns a value moves sideways between the mid block's output and the decoded frame: each conv
    with a spatial kernel k moves it (k - 1) / 2 pixels at its resolution, 2**-level latent columns."""
    reach, level = 0.0, 0
    for up_block in decoder.up_blocks:
        reach += sum(_reach(m) for m in _convs(up_block.resnets)) / 2 ** level
        upsamplers = getattr(up_block, "upsamplers", None) or [getattr(up_block, "upsampler", None)]  # Wan 2.1, 2.2
        for upsampler in upsamplers:
            if upsampler is not None and getattr(upsampler, "mode", "").startswith("upsample"):
                level += 1  # its spatial conv runs at the upsampled resolution
                reach += sum(_reach(m) for m in _convs(upsampler.resample)) / 2 ** level
    reach += sum(_reach(m) for m in _convs(decoder.conv_out)) / 2 ** level
    return math.ceil(reach)


def _convs(module: nn.Module):
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]


def _reach(conv: nn.Module) -> float:
    return (conv.kernel_size[-1] - 1) // 2 * conv.dilation[-1]


def bands(width: int, parts: int, halo: int) -> list[Band]:
    """`parts` bands of a `width`-column latent, as even as whole columns allow, each widened by the halo."""
    edges = [round(k * width / parts) for k in range(parts + 1)]
    return [Band(max(0, a - halo), min(width, b + halo), a, b) for a, b in zip(edges, edges[1:])]


@contextlib.contextmanager
def decoding_band(decoder: nn.Module, band: Band):
    """While inside: the decoder's mid block hands the up-blocks only the band's columns (a forward hook, so
    FastVideo's decoder code runs unchanged)."""

    def crop(module, inputs, output):
        cropped = output[..., band.start:band.stop]
        return cropped.contiguous(memory_format=_memory_format(output))

    handle = decoder.mid_block.register_forward_hook(crop)
    try:
        yield
    finally:
        handle.remove()


def _memory_format(x: torch.Tensor):
    return torch.channels_last_3d if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) \
        else torch.contiguous_format


def band_chunks(chunks, band: Band):
    """The kept columns of each decoded chunk of a band."""
    for chunk in chunks:
        scale = chunk.shape[-1] // (band.stop - band.start)  # output pixels a latent column
        yield chunk[..., (band.keep_start - band.start) * scale:(band.keep_stop - band.start) * scale]


def gather_bands(kept: torch.Tensor, all_bands: list[Band], rank: int) -> torch.Tensor:
    """All-gather one chunk's kept band from every rank (padded to the widest band) -> the whole frame."""
    import torch.distributed as dist

    scale = kept.shape[-1] // (all_bands[rank].keep_stop - all_bands[rank].keep_start)
    widest = max(b.keep_stop - b.keep_start for b in all_bands) * scale
    padded = torch.nn.functional.pad(kept, (0, widest - kept.shape[-1])).contiguous()
    pieces = [torch.empty_like(padded) for _ in all_bands]
    dist.all_gather(pieces, padded)
    return torch.cat([p[..., :(b.keep_stop - b.keep_start) * scale] for p, b in zip(pieces, all_bands)], dim=-1)
