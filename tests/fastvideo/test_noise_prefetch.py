"""The initial noise drawn while the text encodes (backends/fastvideo/noise.py), with FastVideo's own stages.

FastVideo's input stage seeds the generators and its latent stage draws; the prefetching stage must give
the same latents, bit for bit, and leave the generator where the stock stage leaves it (the DMD loop draws
from it next). Needs FastVideo; the latent shape is the full 1280x704x121 one (5.2 million numbers).
"""

from types import SimpleNamespace

import pytest
import torch


@pytest.fixture
def stages(monkeypatch):
    import fastvideo.pipelines.stages.latent_preparation as latent_module
    from fastvideo.configs.pipelines.wan import FastWan2_2_TI2V_5B_Config
    from fastvideo.models.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from fastvideo.pipelines.stages import InputValidationStage, LatentPreparationStage

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(latent_module, "get_local_torch_device", lambda: device)
    monkeypatch.setattr(latent_module, "randn_tensor", latent_module.randn_tensor)  # undone after the test
    config = FastWan2_2_TI2V_5B_Config()
    config.vae_config.arch_config.spatial_compression_ratio = 16  # the Wan2.2 VAE's, read from the model's files
    stock = LatentPreparationStage(scheduler=FlowMatchEulerDiscreteScheduler(shift=config.flow_shift),
                                   transformer=SimpleNamespace(num_channels_latents=48))
    return InputValidationStage(), stock, SimpleNamespace(pipeline_config=config)


def test_a_draw_with_other_args_than_the_pipelines_is_refused(stages):
    """What the replica sends the worker is a copy of the args without the model's VAE compression (8, not 16):
    a draw made with it has the wrong shape, and the stage draws again (run 39's first try drew with it)."""
    from fastvideo.configs.pipelines.wan import FastWan2_2_TI2V_5B_Config

    from serve_app.backends.fastvideo.noise import prefetching_latent_stage, start_prefetch

    validate, stock, args = stages
    stage = prefetching_latent_stage(stock)
    run(validate, stage, args, request(3))  # learns the dtype
    batch = request(3)
    assert start_prefetch(stage, batch, SimpleNamespace(pipeline_config=FastWan2_2_TI2V_5B_Config()))
    got = run(validate, stage, args, batch)
    assert stage.prefetched_draws == 0
    assert torch.equal(got.latents, run(validate, stock, args, request(3)).latents)


def run(validate, latent, args, batch):
    """FastVideo's order: seeds, then the text (its dtype), then the latent stage."""
    batch = validate.forward(batch, args)
    batch.prompt_embeds = [torch.zeros(1, 512, 4096)]  # the text encoder's output dtype (fp32 here)
    return latent.forward(batch, args)


def request(seed: int):
    from fastvideo.pipelines import ForwardBatch

    return ForwardBatch(data_type="video", prompt="a red car", seed=seed, height=704, width=1280, num_frames=121,
                        num_inference_steps=3)


def test_the_prefetching_stage_draws_what_fastvideos_stage_draws(stages):
    """Drawn ahead, in threads (chunked_randn.py), against FastVideo's stage as it ships."""
    from serve_app.backends.fastvideo.noise import (PREFETCHED_NOISE, install_noise_draw, prefetching_latent_stage,
                                                    start_prefetch)

    validate, stock, args = stages
    expected, other = run(validate, stock, args, request(11)), run(validate, stock, args, request(12))
    assert install_noise_draw().startswith("drawn ahead, in ")
    stage = prefetching_latent_stage(stock)
    assert not start_prefetch(stage, request(11), args)  # the dtype is learned from the first request
    first = run(validate, stage, args, request(11))
    assert torch.equal(first.latents, expected.latents)
    for seed in (11, 12):
        batch = request(seed)
        assert start_prefetch(stage, batch, args) and PREFETCHED_NOISE in batch.extra
        got = run(validate, stage, args, batch)
        assert stage.prefetched_draws == seed - 10  # taken, not drawn again by the stock code
        want = expected if seed == 11 else other
        assert PREFETCHED_NOISE not in got.extra
        assert got.latents.shape == (1, 48, 31, 44, 80) and got.latents.device == want.latents.device
        assert torch.equal(got.latents, want.latents) and got.raw_latent_shape == want.raw_latent_shape
        # the DMD loop's next draw from the request's generator is the same as after the stock stage
        assert torch.equal(torch.randn(8, generator=got.generator[0]), torch.randn(8, generator=want.generator[0]))
