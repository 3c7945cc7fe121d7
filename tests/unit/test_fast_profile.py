"""The fast profile's parts on CPU with the real code: FP8 linears (torch's own _scaled_mm) and the light decoder."""

import pytest
import torch
from torch import nn

from serve_app.backends.fastvideo.fast_profile import apply_speed_profile, use_fp8_linears, use_light_decoder
from serve_app.backends.fastvideo.fp8 import Fp8Linear, convert_linears, fp8_unavailable
from serve_app.backends.light_decoder import LightDecoder, load_light_decoder
from serve_app.models.light_decoder import build


class ReplicatedLinear(nn.Linear):
    """FastVideo's contract, by name: forward returns (output, bias)."""

    skip_bias_add = False

    def forward(self, x):
        return super().forward(x), None


def relative_error(a, b):
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


def test_fp8_linear_is_close_to_bf16_but_not_equal():
    torch.manual_seed(0)
    linear = nn.Linear(256, 512).to(torch.bfloat16)
    x = torch.randn(4, 33, 256, dtype=torch.bfloat16)
    fp8 = Fp8Linear(linear.weight, linear.bias, returns_tuple=False)
    y, reference = fp8(x), linear(x)
    assert y.shape == reference.shape and y.dtype == torch.bfloat16
    assert 0 < relative_error(y, reference) < 0.06  # e4m3 keeps 3 mantissa bits: a few per cent, never exact
    assert fp8.weight_fp8.dtype == torch.float8_e4m3fn and fp8.weight_fp8.element_size() == 1


def test_row_scales_keep_an_outlier_token_from_spoiling_the_others():
    torch.manual_seed(1)
    linear = nn.Linear(128, 128, bias=False).to(torch.bfloat16)
    x = torch.randn(16, 128, dtype=torch.bfloat16)
    x[0] *= 1000  # one loud token
    y = Fp8Linear(linear.weight, None, returns_tuple=False)(x)
    assert relative_error(y[1:], linear(x)[1:]) < 0.06


def test_convert_linears_replaces_what_fp8_can_take_and_keeps_each_contract():
    block = nn.Module()
    block.to_q = ReplicatedLinear(64, 64)
    block.ffn = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
    block.odd = nn.Linear(64, 10)  # 10 outputs: not a multiple of 16
    x = torch.randn(5, 64)
    before_q, before_ffn = block.to_q(x)[0], block.ffn(x)
    assert convert_linears(block) == {"fp8_linears": 3, "fp8_skipped": 1}
    assert isinstance(block.to_q, Fp8Linear) and isinstance(block.ffn[0], Fp8Linear)
    assert isinstance(block.odd, nn.Linear) and not isinstance(block.odd, Fp8Linear)
    out, bias = block.to_q(x)
    assert bias is None and relative_error(out, before_q) < 0.06
    assert relative_error(block.ffn(x), before_ffn) < 0.1


def test_fp8_runs_here_or_says_why():
    assert fp8_unavailable("cpu") is None  # torch's CPU build runs _scaled_mm
    if not torch.cuda.is_available():
        reason = fp8_unavailable("cuda").lower()  # the reason, in torch's words, for the start-up log
        assert "nvidia" in reason or "cuda" in reason  # no driver (a CUDA build) / no CUDA (a CPU-only build)


def test_the_quality_profile_sends_nothing_to_the_worker_and_fast_sends_both_parts(tmp_path):
    sent = []

    def run_in_worker(fn, **kwargs):
        sent.append(fn)
        return {fn.__name__: "done"}

    assert apply_speed_profile(run_in_worker, "quality", tmp_path / "x.pth") == {"speed_profile": "quality"}
    assert sent == []
    done = apply_speed_profile(run_in_worker, "fast", None)
    assert sent == [use_fp8_linears] and "Wan VAE" in done["light_decoder"]
    apply_speed_profile(run_in_worker, "fast", tmp_path / "x.pth")
    assert sent[1:] == [use_fp8_linears, use_light_decoder]


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    return LightDecoder().float().eval()


def test_the_light_decoder_makes_wan_frame_counts_and_sizes(decoder):
    video = decoder.decode(torch.randn(1, 48, 5, 4, 6))
    assert video.shape == (1, 3, 17, 64, 96)  # 1 + 4 (5 - 1) frames, 16x in space
    assert float(video.min()) >= 0 and float(video.max()) <= 1


def test_decoding_in_chunks_equals_decoding_at_once(decoder):
    latents = torch.randn(1, 48, 7, 3, 5)
    whole = decoder.decode(latents, chunk=7)
    for chunk in (1, 2, 3):
        assert torch.allclose(decoder.decode(latents, chunk=chunk), whole, atol=1e-6)


def test_the_light_decoder_is_causal(decoder):
    latents = torch.randn(1, 48, 5, 3, 4)
    changed = latents.clone()
    changed[:, :, 3] += 1
    a, b = decoder.decode(latents), decoder.decode(changed)
    first_touched = 1 + 4 * (3 - 1)  # latent frame 3 makes video frames 9..12
    assert torch.equal(a[:, :, :first_touched], b[:, :, :first_touched])
    assert not torch.equal(a[:, :, first_touched:], b[:, :, first_touched:])


def test_a_checkpoint_in_the_taew2_2_layout_loads_with_its_encoder_keys_ignored(tmp_path):
    path = build(tmp_path / "light.pth", seed=3)
    state = torch.load(path, weights_only=True)
    state["encoder.0.weight"] = torch.zeros(64, 12, 3, 3)
    grow = "decoder.13.conv.weight"  # a time-growth conv saved for more frames: its last frame's rows are used
    state[grow] = torch.cat([torch.zeros_like(state[grow]), state[grow]])
    torch.save(state, path)
    model = load_light_decoder(path, dtype=torch.float32)
    torch.manual_seed(3)
    reference = LightDecoder().float()
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_checkpoint_of_another_layout_fails_with_what_differs(tmp_path):
    path = build(tmp_path / "light.pth")
    state = torch.load(path, weights_only=True)
    state["decoder.1.weight"] = torch.zeros(256, 16, 3, 3)  # Wan 2.1's 16 latent channels
    torch.save(state, tmp_path / "wan21.pth")
    with pytest.raises(ValueError, match="taew2_1 is for Wan 2.1"):
        load_light_decoder(tmp_path / "wan21.pth")
    del state["decoder.22.weight"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(ValueError, match="missing"):
        load_light_decoder(tmp_path / "short.pth")
    with pytest.raises(FileNotFoundError, match="light_decoder_path"):
        load_light_decoder(tmp_path / "nowhere.pth")
