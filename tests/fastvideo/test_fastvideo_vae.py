"""The fused-kernel Wan VAE (serve_app.backends.fastvideo.vae) gives FastVideo's own output, on a small random VAE.

On the GPU where there is one (scripts/gpu_check.sh: cuDNN's convs, TF32 off where it says), else on the CPU (CI).
"""

import copy
from types import SimpleNamespace

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FUSED_NORM_COMPILED = DEVICE == "cuda"  # as the service builds it; on the CPU the same math, eager


def compiled_on_cpu_in_soak(test):
    """inductor's C++ code takes about a minute to compile on CI's two cores: on the CPU, `make soak` runs it."""
    return pytest.mark.soak(test) if DEVICE == "cpu" else test


@pytest.fixture(autouse=True)
def fastvideo_decodes_here(monkeypatch):
    import fastvideo.pipelines.stages.decoding as decoding

    monkeypatch.setattr(decoding, "get_local_torch_device", lambda: torch.device(DEVICE))


@pytest.fixture(scope="module")
def vaes():
    from fastvideo.configs.models.vaes import WanVAEConfig
    from fastvideo.configs.models.vaes.wanvae import WanVAEArchConfig
    from fastvideo.models.vaes.wanvae import AutoencoderKLWan

    from serve_app.backends.fastvideo.vae import speed_up_wan_vae

    torch.manual_seed(0)
    arch = WanVAEArchConfig(base_dim=16, decoder_base_dim=32, z_dim=48, dim_mult=(1, 2, 2, 2), num_res_blocks=1,
                            temperal_downsample=(False, True, True), in_channels=12, out_channels=12, patch_size=2,
                            scale_factor_spatial=16, scale_factor_temporal=4, is_residual=True,
                            latents_mean=(0.0,) * 48, latents_std=(1.0,) * 48)
    stock = AutoencoderKLWan(WanVAEConfig(arch_config=arch)).eval().to(DEVICE)
    for p in stock.parameters():
        torch.nn.init.normal_(p, std=0.05)
    fast = copy.deepcopy(stock)
    counts = speed_up_wan_vae(fast, compiled=FUSED_NORM_COMPILED)
    return stock, fast, counts


def test_every_norm_upsample_and_conv_is_switched_and_the_weights_keep_their_names(vaes):
    stock, fast, counts = vaes
    assert counts["fused_norms"] > 10 and counts["native_upsamples"] == 3 and counts["padded_convs"] > 20
    assert counts["folded_upsample_convs"] == 3 and counts["view_shortcuts"] == 3
    assert list(stock.state_dict()) == list(fast.state_dict())


def test_fp32_decode_and_encode_match(vaes):
    stock, fast, _ = vaes
    z = torch.randn(1, 48, 3, 8, 12, device=DEVICE)
    x = torch.rand(1, 3, 5, 128, 192, device=DEVICE) * 2 - 1
    # TF32 off: the folded upsampling's convs add the same products in another order, which TF32's 10-bit
    # inputs would turn into 1e-4-sized differences (run 33)
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True,
                                                     allow_tf32=False):
        torch.testing.assert_close(fast.decode(z), stock.decode(z), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast.encode(x).mode(), stock.encode(x).mode(), rtol=1e-4, atol=1e-4)


def test_bf16_autocast_decode_matches_within_bf16_rounding(vaes):
    stock, fast, _ = vaes
    z = torch.randn(1, 48, 3, 8, 12, device=DEVICE)
    stock_bf16, fast_bf16 = copy.deepcopy(stock).bfloat16(), copy.deepcopy(fast).bfloat16()
    with torch.no_grad(), torch.autocast(DEVICE, dtype=torch.bfloat16):
        want, got = stock_bf16.decode(z), fast_bf16.decode(z)
    assert got.dtype == want.dtype
    assert (got - want).abs().max().item() <= 2 ** -5  # a few bf16 ulps of a value in [-1, 1]
    assert (got - want).abs().mean().item() <= 1e-3


def _fp32_args():
    config = SimpleNamespace(vae_decode_precision="fp32", vae_precision="fp32", vae_tiling=False)
    return SimpleNamespace(pipeline_config=config, disable_autocast=False, vae_cpu_offload=False)


def _chunked(vae, z, service: bool = True):
    """The service's chunk loop (streaming.py: the first chunk eager, its one-frame caches zero-padded), or
    FastVideo's own streaming loop (one latent frame a call, the caches as they come)."""
    from serve_app.backends.fastvideo.streaming import StreamingDecodingStage

    stage, args = StreamingDecodingStage(vae), _fp32_args()
    with torch.no_grad():
        if service:
            return torch.cat(list(stage.decode_chunks(z, args)), dim=2)
        cache, chunks = None, []
        for i in range(z.shape[2]):
            chunk, cache = stage.streaming_decode(z[:, :, i:i + 1], args, cache, is_first_chunk=i == 0)
            chunks.append(chunk)
        return torch.cat(chunks, dim=2)


def test_the_service_chunk_loop_gives_fastvideos_decode(vaes):
    """Zero-padding the first chunk's one-frame caches changes no number (FastVideo's stock VAE, fp32): the same
    as FastVideo's own streaming loop, and both as its whole-video decode within conv-algorithm rounding."""
    from fastvideo.pipelines.stages.decoding import DecodingStage

    stock, _, _ = vaes
    z = torch.randn(1, 48, 5, 8, 12, device=DEVICE)
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        got = _chunked(stock, z)
        assert torch.equal(got, _chunked(stock, z, service=False))
        with torch.no_grad():
            want = DecodingStage(stock).decode(z, _fp32_args())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@compiled_on_cpu_in_soak
def test_compiled_decoder_blocks_match_and_trace_once(vaes):
    """The last two up-stages' residual blocks compiled: the fp32 decode is unchanged; the service's loop traces
    at its three-frame warm-up every graph a longer decode needs, fewer than FastVideo's loop does."""
    from serve_app.backends.fastvideo.vae import compile_decoder_blocks

    _, fast, _ = vaes  # its uncompiled blocks run the same shapes here as the compiled copies'
    z = torch.randn(1, 48, 6, 8, 12, device=DEVICE)
    want = _chunked(fast, z)  # also traces the fused norm kernel (not a block) for these shapes
    _chunked(fast, z, service=False)
    traced = {}
    for service in (True, False):
        compiled = copy.deepcopy(fast)
        assert compile_decoder_blocks(compiled)["vae_compiled_blocks"] == 4  # 2 stages x (num_res_blocks + 1)
        start = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        _chunked(compiled, z[:, :, :3], service)  # the warm-up
        traced[service] = torch._dynamo.utils.counters["stats"]["unique_graphs"] - start
        got = _chunked(compiled, z, service)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - start == traced[service]  # nothing new
        if service:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert 0 < traced[True] < traced[False]


def test_the_shortcut_views_and_the_folded_upsampling_change_only_rounding(vaes):
    """Streamed as the service decodes (fp32, TF32 off): the shortcut added as a view (the same values as
    DupUp3D's copies: tests/unit/test_vae_upsampling.py checks them bit for bit) and the upsampling folded into
    2x2 convs (the same sums) agree within fp32 rounding. Not bit for bit on a GPU: the in-place add keeps the
    channels-last layout where the stock add of two layouts may not, and the next convs then pick other cuDNN
    algorithms (run 35 saw `torch.equal` fail here while every other comparison held)."""
    from serve_app.backends.fastvideo.vae import speed_up_wan_vae

    stock, fast, _ = vaes
    before = copy.deepcopy(stock)
    speed_up_wan_vae(before, upsample_blocks=False, compiled=FUSED_NORM_COMPILED)
    views_only = copy.deepcopy(fast)
    for module in views_only.modules():
        if hasattr(module, "folded_weight"):
            del module.folded_weight  # back to the stock upsample + conv
    z = torch.randn(1, 48, 4, 8, 12, device=DEVICE)
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        want = _chunked(before, z)
        torch.testing.assert_close(_chunked(views_only, z), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(_chunked(fast, z), want, rtol=1e-4, atol=1e-4)
