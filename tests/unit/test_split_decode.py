"""One video's VAE decode over a replica's GPUs (serve_app/backends/fastvideo/split_decode.py), its pure-torch parts.

The bands, the halos counted from a decoder's modules (one wide one, or narrow ones at each resolution), the mid
block's crop and the gather over two gloo processes. The Wan decoder itself decoded in bands (equal to a whole decode): tests/fastvideo/test_split_over_processes.py.
"""

import socket

import pytest

torch = pytest.importorskip("torch")
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402

from serve_app.backends.fastvideo.split_decode import (  # noqa: E402
    Band,
    bands,
    decoder_halo,
    decoding_band,
    exchange_fits,
    gather_bands,
    station_halos,
)


@pytest.mark.parametrize("width, parts, halo", [(80, 2, 13), (30, 3, 9), (7, 2, 20), (81, 4, 3)])
def test_bands_keep_every_column_once_and_decode_it_with_its_halo(width, parts, halo):
    every = bands(width, parts, halo)
    kept = [c for b in every for c in range(b.keep_start, b.keep_stop)]
    assert kept == list(range(width))
    for b in every:
        assert b.start == max(0, b.keep_start - halo) and b.stop == min(width, b.keep_stop + halo)
    assert bands(80, 2, 13) == [Band(0, 53, 0, 40), Band(27, 80, 40, 80)]  # two GPUs: 53 of 80 columns each


class _Upsampler(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode
        self.resample = nn.Sequential(nn.Upsample(scale_factor=2.0), nn.Conv2d(4, 4, 3, padding=1))
        self.time_conv = nn.Conv3d(4, 8, (3, 1, 1))  # no spatial reach


class _UpBlock(nn.Module):
    def __init__(self, resnets, mode):
        super().__init__()
        self.resnets = nn.ModuleList(nn.Sequential(nn.Conv3d(4, 4, 3), nn.Conv3d(4, 4, 3), nn.Conv3d(4, 4, 1))
                                     for _ in range(resnets))
        self.upsampler = _Upsampler(mode) if mode else None


def _decoder(resnets: int):
    decoder = nn.Module()
    decoder.mid_block = nn.Identity()
    decoder.up_blocks = nn.ModuleList([_UpBlock(resnets, "upsample3d"), _UpBlock(resnets, "upsample3d"),
                                       _UpBlock(resnets, "upsample2d"), _UpBlock(resnets, None)])
    decoder.conv_out = nn.Conv3d(4, 12, 3)
    return decoder


def test_the_halo_counts_each_3x3_conv_at_its_resolution():
    # Wan 2.2's decoder: 3 residual blocks of two 3x3x3 convs per level, 2x up three times, a 3x3 head:
    # 6 + 0.5 + 3 + 0.25 + 1.5 + 0.125 + 0.75 + 0.125 = 12.25 latent columns
    assert decoder_halo(_decoder(3)) == 13
    assert decoder_halo(_decoder(2)) == 9  # 4 + 0.5 + 2 + 0.25 + 1 + 0.125 + 0.5 + 0.125 = 8.5


def test_the_narrow_halos_are_what_the_next_block_reaches_at_its_own_resolution():
    # after the mid block and after each of Wan 2.2's up-blocks: 6 + 0.5 columns of the block's input (its
    # upsampling conv runs at twice its resolution), 6 for the last (no upsampler), 1 for the head's 3x3 conv
    assert station_halos(_decoder(3)) == (7, 7, 7, 6, 1)
    assert station_halos(_decoder(2)) == (5, 5, 5, 4, 1)


def test_halos_are_exchanged_only_where_every_band_is_wider_than_they_are(monkeypatch):
    decoder = _decoder(3)  # 7 latent columns after the mid block
    assert exchange_fits(decoder, bands(80, 2, 0))  # 1280 px on two GPUs: 40 columns each
    assert exchange_fits(decoder, bands(56, 8, 0))  # 7 each: just enough
    assert not exchange_fits(decoder, bands(50, 8, 0))  # 6 or 7 each: a neighbour cannot give 7
    monkeypatch.setenv("FASTWAN_SPLIT_DECODE", "wide")
    assert not exchange_fits(decoder, bands(80, 2, 0))


def test_the_mid_block_hands_on_only_the_band_while_decoding_it():
    decoder = _decoder(1)
    x = torch.arange(2 * 3 * 1 * 2 * 10.0).reshape(2, 3, 1, 2, 10).contiguous(memory_format=torch.channels_last_3d)
    with decoding_band(decoder, Band(2, 7, 3, 5)):
        cropped = decoder.mid_block(x)
    assert torch.equal(cropped, x[..., 2:7]) and cropped.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(decoder.mid_block(x), x) and not decoder.mid_block._forward_hooks  # removed after


def _gather_rank(rank: int, port: int, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    every = bands(15, 2, 4)  # kept widths 8 and 7 latent columns: the narrower one is padded for the gather
    b = every[rank]
    kept = torch.full((1, 3, 4, 2, (b.keep_stop - b.keep_start) * 16), float(rank + 1))
    frame = gather_bands(kept, every, rank)
    queue.put((rank, frame[0, 0, 0, 0].tolist()))
    dist.destroy_process_group()


def test_the_bands_are_gathered_into_the_whole_frame_on_every_rank():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_gather_rank, args=(rank, port, queue)) for rank in range(2)]
    for p in procs:
        p.start()
    rows = dict(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    want = [1.0] * 8 * 16 + [2.0] * 7 * 16
    assert rows[0] == want and rows[1] == want
