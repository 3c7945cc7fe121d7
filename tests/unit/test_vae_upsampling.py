"""The Wan decoder's cheaper upsampling (serve_app/backends/fastvideo/upsampling.py) against the stock operations.

Pure torch, on the CPU: the upsampler's 2x nearest copy + 3x3 conv as one 2x2 conv (the same sums) and the
up-block's duplicated shortcut as a view (the same values). The whole decoder with them: tests/gpu.
"""

import copy
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from serve_app.backends.fastvideo.upsampling import SubPixelUpsampleConv, duplicated_view, fold_upsample_conv  # noqa: E402


def _pair(cin, cout, mode="nearest-exact", scale=(2.0, 2.0), kernel=3, padding=1, stride=1, bias=True):
    torch.manual_seed(0)
    return nn.Sequential(nn.Upsample(scale_factor=scale, mode=mode),
                         nn.Conv2d(cin, cout, kernel, padding=padding, stride=stride, bias=bias)).double()


@pytest.mark.parametrize("mode", ["nearest-exact", "nearest"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_one_2x2_conv_gives_the_upsample_and_3x3_conv(mode, bias, channels_last):
    stock = _pair(6, 5, mode=mode, bias=bias)
    folded = copy.deepcopy(stock)
    assert fold_upsample_conv(folded) and type(folded) is SubPixelUpsampleConv
    x = torch.randn(3, 6, 7, 10, dtype=torch.float64)  # odd height: every border case
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want, got = stock(x), folded(x)
    assert got.shape == want.shape == (3, 5, 14, 20)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert list(folded.state_dict()) == list(stock.state_dict())  # the folded weights are not saved or loaded


def test_in_bf16_the_folded_conv_stays_within_bf16_rounding_of_the_exact_result():
    stock = _pair(64, 32)
    folded = copy.deepcopy(stock).bfloat16()
    fold_upsample_conv(folded)
    x = torch.randn(2, 64, 12, 16, dtype=torch.float64)
    with torch.no_grad():
        exact = stock(x)
        stock_bf16 = copy.deepcopy(stock).bfloat16()(x.bfloat16()).double()
        got = folded(x.bfloat16()).double()
    scale = exact.abs().max().item()
    assert (got - exact).abs().max().item() <= 2 ** -6 * scale  # a few bf16 ulps of the largest value
    assert (got - exact).abs().mean().item() <= 2 * (stock_bf16 - exact).abs().mean().item()


@pytest.mark.parametrize("change", [dict(scale=(3.0, 3.0)), dict(kernel=5, padding=2), dict(stride=2),
                                   dict(mode="bilinear"), dict(padding=0)])
def test_other_pairs_are_left_as_they_are(change):
    pair = _pair(4, 4, **change)
    assert not fold_upsample_conv(pair)
    assert type(pair) is nn.Sequential and not hasattr(pair, "folded_weight")


def _dup_up(x, out_channels, factor_t, factor_s):
    """FastVideo's DupUp3D by its definition: each channel repeated r times, read as (Cout, ft, fs, fs)."""
    r = out_channels * factor_t * factor_s * factor_s // x.shape[1]
    n, _, t, h, w = x.shape
    y = x.repeat_interleave(r, dim=1).view(n, out_channels, factor_t, factor_s, factor_s, t, h, w)
    return y.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(n, out_channels, t * factor_t, h * factor_s, w * factor_s)


@pytest.mark.parametrize("cin, cout, ft, fs", [(8, 8, 2, 2), (8, 4, 1, 2), (8, 8, 1, 2), (8, 2, 2, 2)])
def test_the_shortcut_view_holds_dupup3ds_values(cin, cout, ft, fs):
    """Wan's three up-blocks are (1024, 1024, 2, 2) twice and (1024, 512, 1, 2); the rest are other repeats."""
    x = torch.randn(2, cin, 3, 4, 5).contiguous(memory_format=torch.channels_last_3d)
    dup = SimpleNamespace(factor_t=ft, factor_s=fs, out_channels=cout, repeats=cout * ft * fs * fs // cin)
    want = _dup_up(x, cout, ft, fs)
    view = duplicated_view(x, dup, want.shape)
    assert view is not None and view.data_ptr() == x.data_ptr()  # a view: nothing copied
    assert torch.equal(view.reshape(want.shape), want)
    up = torch.randn(want.shape)
    assert torch.equal(up.clone().view(view.shape).add_(view).view(want.shape), up + want)  # the up-block's add


def test_the_shortcut_view_refuses_what_it_cannot_express():
    x = torch.randn(1, 6, 2, 3, 3)
    dup = SimpleNamespace(factor_t=1, factor_s=2, out_channels=4, repeats=3)  # 6 * 3 = 4 * 4 fails: no split
    assert duplicated_view(x, dup, (1, 4, 2, 6, 6)) is None
    dup = SimpleNamespace(factor_t=2, factor_s=2, out_channels=6, repeats=8)
    assert duplicated_view(x, dup, (1, 6, 3, 6, 6)) is None  # the first chunk's shape (one frame dropped)
    x = torch.randn(1, 4, 2, 3, 3)
    dup = SimpleNamespace(factor_t=2, factor_s=2, out_channels=8, repeats=16)  # more repeats than sub-positions
    assert duplicated_view(x, dup, (1, 8, 4, 6, 6)) is None


@pytest.mark.parametrize("cin, cout, ft, frames", [(8, 4, 1, 3), (8, 8, 2, 2)])  # Wan's upsample2d / upsample3d
def test_the_shortcut_added_as_the_parities_interleave_gives_the_upsampler_plus_dupup3d(cin, cout, ft, frames):
    """What the up-block hands its folded upsampler (PENDING_SHORTCUT) comes back added, in WanResample's
    frames: the same values as the stock upsample + conv, then DupUp3D's shortcut added."""
    from serve_app.backends.fastvideo.upsampling import PENDING_SHORTCUT, PendingShortcut

    mid = 6  # the upsampler's input channels (the residual blocks' output)
    stock = _pair(mid, cout)
    folded = copy.deepcopy(stock)
    fold_upsample_conv(folded)
    block_input = torch.randn(1, cin, frames, 5, 7, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last_3d)
    t = frames * ft  # WanResample's frames after its time upsampling
    x = torch.randn(t, mid, 5, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    dup = SimpleNamespace(factor_t=ft, factor_s=2, out_channels=cout, repeats=cout * ft * 4 // cin)
    shortcut = _dup_up(block_input, cout, ft, 2)  # (1, cout, t, 10, 14)
    with torch.no_grad():
        want = stock(x) + shortcut[0].permute(1, 0, 2, 3)
        pending = PendingShortcut(block_input, dup)
        token = PENDING_SHORTCUT.set(pending)
        try:
            got = folded(x)
        finally:
            PENDING_SHORTCUT.reset(token)
        alone = folded(x)  # nothing pending: the upsampler alone, as before
    assert pending.added and got.shape == want.shape == (t, cout, 10, 14)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(alone, stock(x), rtol=1e-12, atol=1e-12)


def test_a_shortcut_that_does_not_fit_is_left_to_the_up_block():
    from serve_app.backends.fastvideo.upsampling import PendingShortcut

    z = torch.randn(3, 16, 6, 8).contiguous(memory_format=torch.channels_last)  # 3 frames of 4 x 10 x 14
    dup = SimpleNamespace(factor_t=2, factor_s=2, out_channels=4, repeats=4)
    assert not PendingShortcut(torch.randn(1, 4, 2, 5, 7), dup).fits(z, 4)  # the first chunk: one frame dropped
    assert PendingShortcut(torch.randn(1, 4, 2, 5, 7), SimpleNamespace(**{**vars(dup), "factor_t": 1})).fits(
        torch.randn(2, 16, 6, 8), 4) is True
    assert not PendingShortcut(torch.randn(1, 4, 2, 5, 7, dtype=torch.bfloat16), dup).fits(
        torch.randn(4, 16, 6, 8), 4)  # another dtype than the upsampler's output


@pytest.mark.parametrize("ft", [1, 2])
def test_the_compiled_form_of_the_interleave_and_add_traces_as_one_graph_with_the_same_numbers(ft):
    """The service compiles `interleave_plus_shortcut` (inductor on the GPU, fullgraph: no break, no eager
    fallback); the same trace here (aot_eager), against the eager in-place form, bit for bit, same layout."""
    import torch._dynamo

    from serve_app.backends.fastvideo.upsampling import interleave_and_add_shortcut, interleave_plus_shortcut

    z = torch.randn(2 * ft, 16, 6, 8).contiguous(memory_format=torch.channels_last).bfloat16()
    block_input = torch.randn(1, 8, 2, 5, 7).contiguous(memory_format=torch.channels_last_3d).bfloat16()
    dup = SimpleNamespace(factor_t=ft, factor_s=2, out_channels=4, repeats=4 * ft * 4 // 8)
    torch._dynamo.reset()
    compiled = torch.compile(interleave_plus_shortcut, backend="aot_eager", dynamic=False, fullgraph=True)
    want = interleave_and_add_shortcut(z, 4, block_input, dup)
    for got in (interleave_plus_shortcut(z, 4, block_input, dup), compiled(z, 4, block_input, dup)):
        assert torch.equal(got, want) and got.stride() == want.stride()
