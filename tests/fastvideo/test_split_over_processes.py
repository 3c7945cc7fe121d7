"""One video over several GPUs, its numerics on the CPU: the DiT split by sequence and the VAE decode split in
bands, over two (and three) gloo processes, against one process (fp32).
The replica of two real GPUs: tests/gpu/test_sequence_parallel.py.
"""

import functools
import os

import pytest
import torch

from tests.fastvideo.gloo import over_processes, tiny_dit


def tiny_dit_rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank: the tiny DiT's output, saved by the first."""
    from fastvideo.forward_context import set_forward_context

    model, inputs = tiny_dit(rank, world, port)
    with torch.no_grad(), set_forward_context(current_timestep=0, attn_metadata=None):
        video = model(*inputs)
    if rank == 0:
        torch.save(video, out)


def test_the_dit_split_over_two_processes_gives_one_processs_output(tmp_path):
    """Per-token timesteps (image-to-video) sharded like the tokens: the same numbers as one process (fp32)."""
    one, two = over_processes(tiny_dit_rank, tmp_path)
    assert one.shape == two.shape == (1, 48, 5, 8, 16)
    assert torch.allclose(one, two, atol=1e-5), (one - two).abs().max()


def split_decode_rank(rank: int, world: int, port: int, out: str, halos: str = "") -> None:
    """One rank: the service's streaming decoding stage on a tiny random Wan 2.2 VAE, its band of one video.
    `halos`: "" (narrow ones exchanged at each resolution, the default) or "wide" (FASTWAN_SPLIT_DECODE)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # as tiny_dit_rank
    os.environ["FASTWAN_SPLIT_DECODE"] = halos
    from types import SimpleNamespace

    import fastvideo.pipelines.stages.decoding as decoding
    import torch.distributed as dist
    from fastvideo.configs.models.vaes import WanVAEConfig
    from fastvideo.configs.models.vaes.wanvae import WanVAEArchConfig
    from fastvideo.models.vaes.wanvae import AutoencoderKLWan

    from serve_app.backends.fastvideo.split_decode import bands, exchange_fits
    from serve_app.backends.fastvideo.streaming import SPLIT_DECODE, StreamingDecodingStage
    from serve_app.backends.fastvideo.vae import speed_up_wan_vae

    decoding.get_local_torch_device = lambda: torch.device("cpu")  # gloo on the CPU, wherever this runs
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    arch = WanVAEArchConfig(base_dim=16, decoder_base_dim=16, z_dim=48, dim_mult=(1, 2, 4, 4), num_res_blocks=1,
                            temperal_downsample=(False, True, True), in_channels=12, out_channels=12, patch_size=2,
                            scale_factor_spatial=16, scale_factor_temporal=4, is_residual=True,
                            latents_mean=(0.0,) * 48, latents_std=(1.0,) * 48)
    torch.manual_seed(0)
    vae = AutoencoderKLWan(WanVAEConfig(arch_config=arch)).eval()
    for param in vae.parameters():
        torch.nn.init.normal_(param, std=0.05)
    speed_up_wan_vae(vae, compiled=False)  # as the service runs it (upsampling folded, shortcut views)
    config = SimpleNamespace(vae_decode_precision="fp32", vae_precision="fp32", vae_tiling=False)
    args = SimpleNamespace(pipeline_config=config, disable_autocast=False, vae_cpu_offload=False,
                           model_loaded={"vae": True}, output_type="pil")
    outputs = {}
    for name, videos in (("one", 1), ("two", 2)):  # two videos: the first GPU decodes them alone, no collective
        latents = torch.randn(videos, 48, 3, 6, 30, generator=torch.Generator().manual_seed(1))
        batch = SimpleNamespace(latents=latents, extra={SPLIT_DECODE: (rank, world)} if world > 1 else {},
                                return_trajectory_decoded=False)
        outputs[name] = StreamingDecodingStage(vae).forward(batch, args).output
    outputs["exchanged"] = exchange_fits(vae.decoder, bands(30, world, 0))
    if rank == 0:
        torch.save(outputs, out)
    else:
        assert all(o.shape[2] == 0 for k, o in outputs.items() if k != "exchanged")  # it delivered nothing
    dist.destroy_process_group()


@pytest.mark.parametrize("halos", ["", "wide"])
def test_the_decode_split_over_processes_gives_one_processs_frames(tmp_path, halos):
    """Each process decodes a band of columns (split_decode.py): with narrow halos exchanged at each resolution
    (the default; over three processes the middle one takes halos from both sides), or one wide halo. Gathered,
    the video is the one a single process decodes (fp32: equal to rounding); a batch of two videos is decoded by
    the first alone."""
    rank_fn = functools.partial(split_decode_rank, halos=halos)
    rank_fn.__name__ = f"split_decode_{halos or 'narrow'}"
    worlds = (1, 2) if halos else (1, 2, 3)
    one, *split = over_processes(rank_fn, tmp_path, worlds)
    for world, got in zip(worlds[1:], split):
        assert got["exchanged"] is (halos != "wide"), (world, halos)
        for name in ("one", "two"):
            assert one[name].shape == got[name].shape and one[name].shape[-1] == 30 * 16, (world, name)
            assert torch.allclose(one[name], got[name], atol=1e-5), (world, name, (one[name] - got[name]).abs().max())
