"""The initial noise drawn ahead (backends/fastvideo/noise.py): taken only when provably the stage's own draw.

The draw here is what FastVideo's latent stage does (diffusers' randn_tensor: torch.randn from the CPU
generator in the prompt embeddings' dtype); the real stage is checked in tests/fastvideo/test_noise_prefetch.py.
"""

from types import SimpleNamespace

import pytest
import torch

from serve_app.backends.fastvideo import noise

SHAPE = (1, 48, 2, 4, 6)
ARGS = SimpleNamespace(name="the worker's FastVideo args")


def stock_draw(batch, fastvideo_args):
    batch.latents = torch.randn(SHAPE, generator=batch.generator[0], dtype=batch.prompt_embeds[0].dtype)
    batch.raw_latent_shape = SHAPE
    return batch


def request(seed=7, **fields):
    base = dict(seed=seed, num_videos_per_prompt=1, prompt="a cat", height=64, width=96, num_frames=5,
                latents=None, generator=None, prompt_embeds=None, extra={})
    return SimpleNamespace(**{**base, **fields})


def stage(dtype=torch.float32):
    return SimpleNamespace(noise_dtype=dtype, draw_stock=stock_draw)


def up_to_the_latent_stage(batch, dtype=torch.float32):
    """What FastVideo does before its latent stage: seed the generators, encode the text."""
    batch.generator = [torch.Generator("cpu").manual_seed(batch.seed)]
    batch.prompt_embeds = [torch.zeros(1, 3, 4, dtype=dtype)]
    return batch


def stock_result(seed=7, dtype=torch.float32):
    batch = stock_draw(up_to_the_latent_stage(request(seed), dtype), None)
    return batch.latents, torch.randn(SHAPE, generator=batch.generator[0])  # and the stream's next draw


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_prefetched_noise_and_the_stream_after_it_equal_the_stages_own(dtype):
    batch = request()
    assert noise.start_prefetch(stage(dtype), batch, ARGS)
    up_to_the_latent_stage(batch, dtype)
    assert noise.take_prefetched(batch, ARGS)
    latents, after = stock_result(dtype=dtype)
    assert torch.equal(batch.latents, latents) and batch.latents.dtype == dtype
    # the denoise's later draws continue the same stream: the generator was moved past the draw
    assert torch.equal(torch.randn(SHAPE, generator=batch.generator[0]), after)


def test_a_generator_in_another_state_refuses_the_draw_and_is_left_alone():
    batch = request()
    assert noise.start_prefetch(stage(), batch, ARGS)
    up_to_the_latent_stage(batch)
    batch.generator[0].manual_seed(8)  # somebody else's generator: the draw is not the stage's
    before = batch.generator[0].get_state()
    assert not noise.take_prefetched(batch, ARGS)
    assert torch.equal(batch.generator[0].get_state(), before) and batch.latents is None
    assert noise.PREFETCHED_NOISE not in batch.extra


@pytest.mark.parametrize("change", ["dtype", "size", "latents", "args"])
def test_a_draw_made_for_other_inputs_is_refused(change):
    batch = request()
    assert noise.start_prefetch(stage(), batch, ARGS)
    up_to_the_latent_stage(batch, torch.bfloat16 if change == "dtype" else torch.float32)
    if change == "size":
        batch.height = 128
    if change == "latents":
        batch.latents = torch.zeros(SHAPE)
    # drawn with other args than the pipeline runs with (a caller's copy: other VAE compression)
    assert not noise.take_prefetched(batch, SimpleNamespace() if change == "args" else ARGS)


def test_nothing_is_drawn_ahead_where_the_stage_could_not_take_it(monkeypatch):
    assert not noise.start_prefetch(stage(dtype=None), request(), None)  # dtype not learned yet
    assert not noise.start_prefetch(stage(), request(latents=torch.zeros(SHAPE)), None)
    assert not noise.start_prefetch(stage(), request(prompt=["a", "b"]), None)
    assert not noise.start_prefetch(SimpleNamespace(), request(), None)  # FastVideo's stock stage
    monkeypatch.setenv(noise.DISABLE_ENV, "0")
    assert not noise.start_prefetch(stage(), request(), None)


def test_a_failed_draw_leaves_the_stage_to_draw_itself():
    def broken(batch, fastvideo_args):
        raise RuntimeError("out of memory")

    batch = request()
    assert noise.start_prefetch(SimpleNamespace(noise_dtype=torch.float32, draw_stock=broken), batch, ARGS)
    up_to_the_latent_stage(batch)
    assert not noise.take_prefetched(batch, ARGS) and batch.latents is None
