"""A lightweight decoder for Wan2.2 latents (the `fast` speed profile), with weights the user supplies.

The Wan VAE's decode is half of a video's time (3-D convs over 1280x704 frames). A tiny autoencoder's
decoder (2-D convs, a one-frame memory per block) does the same job in a fraction of it, with visibly
lower detail. This is the decoder layout of TAEHV's Wan 2.2 checkpoint (`taew2_2`, madebyollin/taehv):
48 latent channels in, 4x in time (minus the first three frames, as Wan's own first latent frame is one
video frame), 8x in space, then 2x2 pixel shuffle; its state dict keys (`decoder.N...`) load as they are.
The project ships no such weights (none can be downloaded here); `serve_app.models.light_decoder` writes
random ones of this layout for speed figures and tests.

It decodes a chunk of latent frames at a time, carrying each block's last input frame into the next
chunk: the output equals a decode of the whole sequence at once, and chunks stream into the MP4 encoder.
Input: the latents the Wan VAE's decoder takes (denormalised); output: frames in [0, 1]. Imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

LATENT_CHANNELS, PATCH, WIDTHS = 48, 2, (256, 128, 64, 64)
TIME_UPSCALE = (1, 2, 2)  # per stage; 4x in all
TRIM = 3  # the first frames the 4x growth makes before the first real one (Wan: 1 + 4 (T - 1) frames)


def _conv(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """Three convs over (this frame, the previous frame's input), plus a skip."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in * 2, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(),
                                  _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x, past):
        return F.relu(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TGrow(nn.Module):
    """One frame -> `stride` frames, by a 1x1 conv to `stride` times the channels."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x):
        return self.conv(x).reshape(-1, x.shape[1], *x.shape[2:])


def decoder_layers() -> nn.Sequential:
    """The 23 layers in checkpoint order (their indices are the state dict's `decoder.N`)."""
    w = WIDTHS
    layers: list[nn.Module] = [Clamp(), _conv(LATENT_CHANNELS, w[0]), nn.ReLU()]
    for stage, stride in enumerate(TIME_UPSCALE):
        layers += [MemBlock(w[stage], w[stage]) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), TGrow(w[stage], stride), _conv(w[stage], w[stage + 1], bias=False)]
    return nn.Sequential(*layers, nn.ReLU(), _conv(w[3], 3 * PATCH ** 2))


class LightDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.decoder = decoder_layers()

    @torch.no_grad()
    def stream(self, latents: torch.Tensor, chunk: int = 4) -> Iterator[torch.Tensor]:
        """(N, 48, T, h, w) latents -> (N, 3, frames, 16h, 16w) chunks in [0, 1], 1 + 4 (T - 1) frames in all."""
        weight = next(self.parameters())
        memory: dict[int, torch.Tensor] = {}
        for start in range(0, latents.shape[2], chunk):
            x = latents[:, :, start:start + chunk].to(weight.device, weight.dtype).transpose(1, 2)  # (N, t, C, h, w)
            frames = self._run(x, memory)
            if start == 0:
                frames = frames[:, TRIM:]
            yield frames.transpose(1, 2)

    def _run(self, x: torch.Tensor, memory: dict[int, torch.Tensor]) -> torch.Tensor:
        n = x.shape[0]
        h = x.reshape(-1, *x.shape[2:])
        for index, layer in enumerate(self.decoder):
            if isinstance(layer, MemBlock):
                frames = h.reshape(n, -1, *h.shape[1:])
                last = memory.get(index)
                last = torch.zeros_like(frames[:, :1]) if last is None else last
                past = torch.cat([last, frames[:, :-1]], 1).reshape(h.shape)
                memory[index] = frames[:, -1:]
                h = layer(h, past)
            else:
                h = layer(h)
        h = F.pixel_shuffle(h, PATCH).clamp(0, 1)
        return h.reshape(n, -1, *h.shape[1:])

    def decode(self, latents: torch.Tensor, chunk: int = 4) -> torch.Tensor:
        return torch.cat(list(self.stream(latents, chunk)), dim=2)


def load_light_decoder(path: Path, device: str = "cpu", dtype: torch.dtype = torch.bfloat16) -> LightDecoder:
    """The decoder with the weights in `path` (.pth or .safetensors, TAEHV's `taew2_2` layout; encoder keys
    are ignored). A file of another layout fails here, at start, with what differs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"light_decoder_path {path} is not a file: point it at a taew2_2 checkpoint")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = LightDecoder()
    expected = model.state_dict()
    given = {k: v for k, v in state.items() if k.startswith("decoder.")}
    missing = sorted(set(expected) - set(given))
    if missing:
        raise ValueError(f"{path} is not a Wan 2.2 light decoder (taew2_2 layout): {len(missing)} decoder "
                         f"weights missing, e.g. {missing[:3]}")
    for key, value in given.items():
        if key not in expected:
            raise ValueError(f"{path}: unexpected weight {key} (not the taew2_2 decoder layout)")
        want = expected[key].shape
        if value.shape != want and value.dim() == 4 and value.shape[0] > want[0] and value.shape[1:] == want[1:]:
            given[key] = value[-want[0]:]  # a time-growth conv saved for more frames: its last frame's channels
        elif value.shape != want:
            raise ValueError(f"{path}: {key} has shape {list(value.shape)}, the taew2_2 layout needs {list(want)}"
                             f" (Wan 2.2 latents have {LATENT_CHANNELS} channels; taew2_1 is for Wan 2.1)")
    model.load_state_dict(given)
    return model.to(device, dtype).eval()
