"""torch.randn from a CPU generator in threads (backends/fastvideo/chunked_randn.py): the same numbers, and the
generator left where torch leaves it, for every size (with and without a tail of under 16) and dtype."""

import pytest
import torch

from serve_app.backends.fastvideo import chunked_randn


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 48, 3, 44, 80), (3, 16001), (1, 7, 100003), (40,), (17,)])
@pytest.mark.parametrize("parts", [2, 3, 8])
def test_the_pieces_are_torchs_numbers_and_the_generator_ends_where_torchs_does(dtype, shape, parts):
    ours, theirs = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    torch.randn(5, generator=ours), torch.randn(5, generator=theirs)  # not at a fresh seed
    got = chunked_randn.randn(shape, ours, dtype, parts=parts)
    want = torch.randn(shape, generator=theirs, dtype=dtype)
    assert got.shape == want.shape and got.dtype == dtype
    assert torch.equal(bits(got), bits(want))
    assert torch.equal(ours.get_state(), theirs.get_state())
    assert torch.equal(torch.randn(3, generator=ours), torch.randn(3, generator=theirs))


def test_this_torch_passes_the_start_check():
    assert chunked_randn.same_as_torch(torch.bfloat16) and chunked_randn.same_as_torch(torch.float32)


def test_the_diffusers_draw_goes_through_the_threads_only_where_it_is_the_same(monkeypatch):
    calls = []

    def original(shape, generator=None, device=None, dtype=None, layout=None):
        calls.append(shape)
        return torch.randn(shape, generator=generator, dtype=dtype)

    draw = chunked_randn.parallel_randn_tensor(original)
    assert chunked_randn.parallel_randn_tensor(draw) is draw  # installed once
    monkeypatch.setattr(chunked_randn, "PARTS", 4)
    big = (1, 48, 31, 44, 80)
    got = draw(big, generator=[torch.Generator().manual_seed(3)], device="cpu", dtype=torch.bfloat16)
    assert calls == [] and torch.equal(bits(got), bits(torch.randn(big, generator=torch.Generator().manual_seed(3),
                                                                     dtype=torch.bfloat16)))
    draw((4, 4), generator=torch.Generator().manual_seed(3), dtype=torch.float32)  # small: torch's own
    draw(big, generator=None, dtype=torch.float32)  # no CPU generator: torch's own
    assert calls == [(4, 4), big]
