"""One video's Wan VAE decode over a replica's GPUs: each decodes a band of columns, the first gathers them.

With `gpus_per_replica` > 1 the DiT is split by sequence, but the decode (half of a video's time) would run on
the first GPU alone. Here every GPU runs the decoder's input conv and mid block on the whole latent frame (its
attention spans the frame; at latent resolution this is cheap), then the up-blocks and the head on its own band
of latent columns widened by a halo on each side, and keeps the band's own columns. The halo covers how far a
value travels sideways through the rest of the decoder (one pixel per 3x3 conv at its own resolution, counted
from the modules: 12.25 latent columns for Wan 2.2's decoder, so 13), so the kept columns see exactly the values
a whole-frame decode gives them (to conv-algorithm rounding). Every GPU keeps its own causal caches; per chunk,
the kept bands are all-gathered and the first GPU delivers the whole frame. Two GPUs: 53 of 80 columns each.

That wide halo is paid at full resolution (13 latent columns are 208 pixels). `exchanging_halos` (the default
where every band is wide enough) instead re-forms a narrow halo at each resolution: after the mid block and after
each up-block, each GPU keeps its own columns and takes from its neighbours only the columns the next block
reaches (7 for Wan 2.2's up-blocks, 1 for the head), one all-gather of the edges per block and chunk: on two GPUs
each decodes 326 of 640 columns at full resolution instead of 424. `FASTWAN_SPLIT_DECODE=wide` keeps the wide halo.
Imports fastvideo's Wan VAE only through the decoder passed in (no import here).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
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
        block_reach, upsamples = _up_block(up_block)
        reach += block_reach / 2 ** level
        level += upsamples
    return math.ceil(reach + _head_reach(decoder) / 2 ** level)


@functools.cache
def station_halos(decoder: nn.Module) -> tuple[int, ...]:
    """Columns (at that resolution) the next block reaches, after the mid block and after each up-block."""
    return tuple(math.ceil(r) for r in [*(_up_block(b)[0] for b in decoder.up_blocks), _head_reach(decoder)])


def _up_block(up_block: nn.Module) -> tuple[float, int]:
    """How far an up-block moves a value sideways, in its input's columns, and whether it doubles the resolution
    (its upsampler's spatial conv runs at the doubled one)."""
    reach, upsamples = float(sum(_reach(m) for m in _convs(up_block.resnets))), 0
    upsamplers = getattr(up_block, "upsamplers", None) or [getattr(up_block, "upsampler", None)]  # Wan 2.1, 2.2
    for upsampler in upsamplers:
        if upsampler is not None and getattr(upsampler, "mode", "").startswith("upsample"):
            upsamples += 1
            reach += sum(_reach(m) for m in _convs(upsampler.resample)) / 2
    return reach, upsamples


def _head_reach(decoder: nn.Module) -> float:
    return float(sum(_reach(m) for m in _convs(decoder.conv_out)))


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


def exchange_fits(decoder: nn.Module, own: list[Band]) -> bool:
    """Whether each band is at least as wide as every halo its neighbours take from it (else: the wide halo),
    and the wide halo was not asked for."""
    if os.environ.get("FASTWAN_SPLIT_DECODE") == "wide":
        return False
    narrowest, scale = min(b.keep_stop - b.keep_start for b in own), 1
    for halo, upsamples in zip(station_halos(decoder), [0, *(_up_block(b)[1] for b in decoder.up_blocks)]):
        scale *= 2 ** upsamples
        if narrowest * scale < halo:
            return False
    return True


@contextlib.contextmanager
def exchanging_halos(decoder: nn.Module, own: Band, rank: int, world: int):
    """While inside: the decoder decodes only this GPU's own columns (`own`: start == keep_start), re-forming the
    halo each block needs from its neighbours' edges after the mid block and after each up-block (forward hooks,
    so FastVideo's decoder code runs unchanged); its output is the band's own columns."""
    halos, at = station_halos(decoder), {"left": 0, "scale": 1}

    def crop_and_exchange(station: int):
        def hook(module, inputs, output):
            if station == 0:  # the mid block's output: the whole frame, at latent resolution
                at["scale"], start = 1, own.keep_start
            else:  # an up-block's: this band and its halos, at (maybe) twice its input's resolution
                scale = output.shape[-1] // inputs[0].shape[-1]
                at["scale"], start = at["scale"] * scale, at["left"] * scale
            kept = output[..., start:start + (own.keep_stop - own.keep_start) * at["scale"]]
            at["left"] = halos[station] if rank > 0 else 0
            return _with_halos(kept, halos[station], rank, world).contiguous(memory_format=_memory_format(output))
        return hook

    def crop_own(module, inputs, output):
        return output[..., at["left"]:at["left"] + (own.keep_stop - own.keep_start) * at["scale"]]

    handles = [m.register_forward_hook(crop_and_exchange(i))
               for i, m in enumerate([decoder.mid_block, *decoder.up_blocks])]
    handles.append(decoder.register_forward_hook(crop_own))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _with_halos(x: torch.Tensor, halo: int, rank: int, world: int) -> torch.Tensor:
    """x with its neighbours' `halo` edge columns on each side (one all-gather of every rank's two edges)."""
    if halo == 0:
        return x
    import torch.distributed as dist

    edges = torch.stack([x[..., :halo], x[..., -halo:]]).contiguous()
    every = [torch.empty_like(edges) for _ in range(world)]
    dist.all_gather(every, edges)
    parts = ([every[rank - 1][1]] if rank > 0 else []) + [x] + ([every[rank + 1][0]] if rank < world - 1 else [])
    return torch.cat(parts, dim=-1)
