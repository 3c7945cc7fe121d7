"""The VAE patch: a faster Wan VAE on FastVideo's own modules, fewer full-size memory passes, same numbers.

Under bf16 autocast, FastVideo 0.2.1's Wan VAE runs every RMS norm and SiLU in fp32 (`F.normalize`
is promoted), upsamples through fp32 copies, and zero-pads each conv input with a copy. At 1280x704
those passes over 0.5-1 GB activations cost about as much as the convolutions. `speed_up_wan_vae`:

- fuses norm + SiLU into one compiled kernel that computes in fp32 and writes the input's dtype
  (the next conv would cast it to that dtype anyway);
- runs nearest upsampling in the tensor's own dtype (copying values is exact in any dtype);
- lets cuDNN do the spatial zero padding of the causal convs instead of an `F.pad` copy;
- runs each upsampler's nearest 2x upsampling and 3x3 conv as one 2x2 conv at the low resolution whose four
  output groups are the four pixel parities (the same sums with the weights pre-added: 4/9 of the conv's work,
  no upsampled copy; equal within bf16 rounding), and adds an up-block's duplicated shortcut as a view in one
  in-place add (stock: a clone, a repeat, a permuted copy and an add of mixed layouts; same numbers), and,
  with `compiled`, adds it as the upsampler's parities interleave: one compiled pass instead of two eager ones;
- and, with `compile_decoder_blocks`, compiles each decoder residual block, so the causal caches'
  copies, the residual adds and the norms around its convs run as fewer, fused kernels.

Modules keep their parameters and names (the state dict is unchanged); only their classes change (to
subclasses defined here). compat.py names the FastVideo versions this was written against.
Imports fastvideo: import this module only where FastVideo is installed.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from fastvideo.models.vaes import wanvae
from torch import nn

from serve_app.backends.fastvideo.upsampling import (
    PENDING_SHORTCUT, PendingShortcut, SubPixelUpsampleConv, duplicated_view, fold_upsample_conv)


FUSED_SHORTCUT_ENV = "FASTWAN_VAE_FUSED_SHORTCUT"  # "0": interleave and shortcut add as two eager passes (bench)


def _rms_norm_silu(x: torch.Tensor, weight: torch.Tensor, silu: bool) -> torch.Tensor:
    y = F.normalize(x.float(), dim=1) * weight
    return (F.silu(y) if silu else y).to(x.dtype)


@functools.cache
def _compiled_kernel():
    return torch.compile(_rms_norm_silu, dynamic=True)


class FusedRMSNormSiLU(wanvae.WanRMS_norm):
    """WanRMS_norm (channel-first, no bias) followed by the block's SiLU, as one kernel."""

    silu: bool = True
    compiled: bool = True

    def forward(self, x):
        if not self.channel_first or isinstance(self.bias, torch.Tensor):
            return wanvae.WanRMS_norm.forward(self, x)
        # gamma * sqrt(dim) as one fp32 tensor: a float argument would compile once per channel count
        kernel = _compiled_kernel() if self.compiled else _rms_norm_silu
        return kernel(x, self.gamma.float() * self.scale, self.silu)


class NativeDtypeUpsample(wanvae.WanUpsample):
    """Nearest upsampling without the fp32 round trip (values are copied, so any dtype is exact)."""

    def forward(self, x):
        if self.mode not in ("nearest", "nearest-exact"):
            return wanvae.WanUpsample.forward(self, x)
        return nn.Upsample.forward(self, x)


class PaddedCausalConv3d(wanvae.WanCausalConv3d):
    """The causal conv with spatial zero padding done by the conv itself; only the time axis is padded here."""

    def forward(self, x, cache_x=None):
        time_pad = self._padding[4]
        if cache_x is not None and time_pad > 0:
            x = torch.cat([cache_x.to(x.device), x], dim=2)
            time_pad -= cache_x.shape[2]
        if time_pad:
            x = F.pad(x, (0, 0, 0, 0, time_pad, 0))
        return F.conv3d(x, self.weight, self.bias, self.stride, (0, self._padding[2], self._padding[0]),
                        self.dilation, self.groups)


class ViewShortcutUpBlock(wanvae.WanResidualUpBlock):
    """The up-block with its DupUp3D shortcut added as a broadcast view of the block's input, in place.

    Stock: `x.clone()`, then DupUp3D's `repeat_interleave`, permuted `contiguous()` copy and an add of a
    channels-last and a contiguous tensor, at up to 640x352x512 per frame. Each output element is the same
    input element added (a copy of values), so the sum is the same. The first chunk (which drops a frame) and
    any factor layout other than Wan's take the stock path."""

    def forward(self, x):
        shortcut = self.avg_shortcut
        if shortcut is None or wanvae.first_chunk.get():
            return wanvae.WanResidualUpBlock.forward(self, x)
        block_input = x  # no clone: the residual blocks and the upsampler make new tensors
        for resnet in self.resnets:
            x = resnet(x)
        # handed to the folded upsampler, the shortcut is added as its parities interleave (not where a whole
        # up-block is compiled, `up-blocks`: inductor fuses the add there)
        pending = None if torch.compiler.is_compiling() else PendingShortcut(block_input, shortcut)
        if self.upsampler is not None and pending is None:
            x = self.upsampler(x)
        elif self.upsampler is not None:  # the context variable is left alone while dynamo traces
            token = PENDING_SHORTCUT.set(pending)
            try:
                x = self.upsampler(x)
            finally:
                PENDING_SHORTCUT.reset(token)
        view = duplicated_view(block_input, shortcut, x.shape) if x.dtype == block_input.dtype else None
        if pending is not None and pending.added:  # added: only the strides the in-place add below would leave
            return x.view(view.shape).view(x.shape)  # (a size-1 batch's, as torch views it: compiled blocks guard it)
        return x + shortcut(block_input) if view is None else x.view(view.shape).add_(view).view(x.shape)


def speed_up_wan_vae(vae: nn.Module, *, fuse_norms: bool = True, native_upsample: bool = True,
                     conv_padding: bool = True, compiled: bool = True, upsample_blocks: bool = True) -> dict:
    """Switch a loaded Wan VAE's modules to the faster classes above; returns what changed.

    Run it after the VAE's dtype is set: the folded upsampling weights are made from the weights as they are."""
    counts = {"fused_norms": 0, "native_upsamples": 0, "padded_convs": 0, "folded_upsample_convs": 0,
              "view_shortcuts": 0, "compiled_shortcut_adds": 0}
    for module in vae.modules():
        if upsample_blocks and type(module) is wanvae.WanResample and isinstance(module.resample, nn.Sequential):
            counts["folded_upsample_convs"] += fold_upsample_conv(module.resample)
            if isinstance(module.resample, SubPixelUpsampleConv):
                module.resample.compiled = compiled and os.environ.get(FUSED_SHORTCUT_ENV) != "0"
                counts["compiled_shortcut_adds"] += module.resample.compiled
        if upsample_blocks and type(module) is wanvae.WanResidualUpBlock:
            module.__class__ = ViewShortcutUpBlock
            counts["view_shortcuts"] += module.avg_shortcut is not None
        if fuse_norms and isinstance(module, wanvae.WanResidualBlock):
            for norm in (module.norm1, module.norm2):
                _fuse(norm, compiled)
            module.nonlinearity = nn.Identity()
            counts["fused_norms"] += 2
        elif fuse_norms and isinstance(module, (wanvae.WanDecoder3d, wanvae.WanEncoder3d)):
            _fuse(module.norm_out, compiled)
            module.nonlinearity = nn.Identity()  # used only after norm_out in these two
            counts["fused_norms"] += 1
        elif native_upsample and type(module) is wanvae.WanUpsample:
            module.__class__ = NativeDtypeUpsample
            counts["native_upsamples"] += 1
        elif conv_padding and type(module) is wanvae.WanCausalConv3d:
            module.__class__ = PaddedCausalConv3d
            counts["padded_convs"] += 1
    return counts


def _fuse(norm: nn.Module, compiled: bool) -> None:
    if type(norm) is not wanvae.WanRMS_norm:
        raise TypeError(f"expected WanRMS_norm, got {type(norm).__name__}")
    norm.__class__ = FusedRMSNormSiLU
    norm.compiled = compiled


def pad_causal_caches(cache: list) -> int:
    """Put a zero frame in front of each one-frame causal cache (after the first chunk of a decode).

    Exact: each causal conv given a one-frame cache pads the missing frame with zeros itself, and the next
    cache keeps only the last frame of this one. But the second chunk now has every later chunk's shapes,
    so a compiled block traces one graph for both. Returns how many caches were padded."""
    padded = 0
    for i, entry in enumerate(cache):
        if isinstance(entry, torch.Tensor) and entry.dim() == 5 and entry.shape[2] == 1:
            cache[i] = torch.cat([torch.zeros_like(entry), entry], dim=2)
            padded += 1
    return padded


def compile_decoder_blocks(vae: nn.Module, blocks: str = "high-resolution") -> dict:
    """torch.compile decoder blocks (the `vae_compile_blocks` setting): `high-resolution`, the residual blocks of
    the last two up-blocks, full and half resolution, where almost all of the decode's activation traffic is;
    `all`, every residual block (the mid block's too); `up-blocks`, each up-block and the mid block as one graph
    (upsampler and shortcut included). Compiled at the warm-up.

    The service decodes in streaming.py's chunks, whose shapes are all the same from the second chunk on
    (the first runs eagerly): one graph shape a block (a whole up-block that upsamples in time: two, its
    upsampler reads a cache from the third chunk on). They are traced again at every start, even with a compile
    cache (torch caches compiled kernels, not its tracing). Dozens of graphs where torch's default
    recompile limit allows 8: the limits are raised."""
    config = torch._dynamo.config
    for name, floor in (("recompile_limit", 256), ("cache_size_limit", 256), ("accumulated_recompile_limit", 2048)):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), floor))
    decoder = vae.decoder
    if blocks == "high-resolution":
        parts = list(decoder.up_blocks)[-2:]
    elif blocks in ("all", "up-blocks"):
        parts = [decoder.mid_block, *decoder.up_blocks]
    else:
        raise ValueError(f"unknown vae_compile_blocks {blocks!r}: high-resolution, all or up-blocks")
    if blocks != "up-blocks":
        parts = [m for part in parts for m in part.modules() if isinstance(m, wanvae.WanResidualBlock)]
    for block in parts:
        block.compile(dynamic=False)
    return {"vae_compiled_blocks": len(parts)}
