"""The fused-kernel Wan VAE (serve_app.backends.fastvideo.vae) gives FastVideo's own output, on a small random VAE."""

import copy

import pytest


@pytest.fixture(scope="module")
def vaes():
    import torch
    from fastvideo.configs.models.vaes import WanVAEConfig
    from fastvideo.configs.models.vaes.wanvae import WanVAEArchConfig
    from fastvideo.models.vaes.wanvae import AutoencoderKLWan

    from serve_app.backends.fastvideo.vae import speed_up_wan_vae

    torch.manual_seed(0)
    arch = WanVAEArchConfig(base_dim=16, decoder_base_dim=32, z_dim=48, dim_mult=(1, 2, 2, 2), num_res_blocks=1,
                            temperal_downsample=(False, True, True), in_channels=12, out_channels=12, patch_size=2,
                            scale_factor_spatial=16, scale_factor_temporal=4, is_residual=True,
                            latents_mean=(0.0,) * 48, latents_std=(1.0,) * 48)
    stock = AutoencoderKLWan(WanVAEConfig(arch_config=arch)).eval().cuda()
    for p in stock.parameters():
        torch.nn.init.normal_(p, std=0.05)
    fast = copy.deepcopy(stock)
    counts = speed_up_wan_vae(fast)
    return stock, fast, counts


def test_every_norm_upsample_and_conv_is_switched_and_the_weights_keep_their_names(vaes):
    stock, fast, counts = vaes
    assert counts["fused_norms"] > 10 and counts["native_upsamples"] == 3 and counts["padded_convs"] > 20
    assert list(stock.state_dict()) == list(fast.state_dict())


def test_fp32_decode_and_encode_match(vaes):
    import torch

    stock, fast, _ = vaes
    z = torch.randn(1, 48, 3, 8, 12, device="cuda")
    x = torch.rand(1, 3, 5, 128, 192, device="cuda") * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(fast.decode(z), stock.decode(z), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast.encode(x).mode(), stock.encode(x).mode(), rtol=1e-4, atol=1e-4)


def test_bf16_autocast_decode_matches_within_bf16_rounding(vaes):
    import torch

    stock, fast, _ = vaes
    z = torch.randn(1, 48, 3, 8, 12, device="cuda")
    stock_bf16, fast_bf16 = copy.deepcopy(stock).bfloat16(), copy.deepcopy(fast).bfloat16()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        want, got = stock_bf16.decode(z), fast_bf16.decode(z)
    assert got.dtype == want.dtype
    assert (got - want).abs().max().item() <= 2 ** -5  # a few bf16 ulps of a value in [-1, 1]
    assert (got - want).abs().mean().item() <= 1e-3


def test_compiled_decoder_blocks_match_and_compile_once_per_chunk_kind(vaes):
    """The last two up-stages' residual blocks compiled: the fp32 decode is unchanged, and after three latent frames
    (the warm-up's) a longer decode compiles nothing new."""
    import torch

    from serve_app.backends.fastvideo.vae import compile_decoder_blocks

    _, fast, _ = vaes
    compiled = copy.deepcopy(fast)
    assert compile_decoder_blocks(compiled)["vae_compiled_blocks"] == 4  # 2 stages x (num_res_blocks + 1)
    z = torch.randn(1, 48, 6, 8, 12, device="cuda")
    with torch.no_grad():
        compiled.decode(z[:, :, :3])  # the warm-up
        before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        got = compiled.decode(z)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == before
        torch.testing.assert_close(got, fast.decode(z), rtol=1e-4, atol=1e-4)
