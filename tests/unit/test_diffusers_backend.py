"""The model path: the tiny model through the real diffusers backend code."""

import io

import numpy as np
import pytest
from PIL import Image

from serve_app.backends import create_backend
from serve_app.contracts import GenerationParams
from serve_app.media.video import probe_mp4
from serve_app.settings import Settings


@pytest.fixture(scope="module")
def backend(tiny_model_root):
    b = create_backend(Settings(model="tiny", tiny_model_dir=tiny_model_root, cpu_threads=2).resolve(gpus=0))
    b.load()
    yield b
    b.close()


def params(seed, **kw):
    base = dict(prompt="a red car on a street", width=96, height=64, num_frames=9, fps=8, num_inference_steps=3,
                guidance_scale=1.0, seed=seed)
    return GenerationParams(**{**base, **kw})


def image_png(color):
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(buf, format="PNG")
    return buf.getvalue()


def test_batch_honours_each_seed_and_matches_single_runs(backend):
    steps = []
    videos = backend.generate([params(1), params(2)], lambda done, total: steps.append((done, total)))
    assert [v.seed for v in videos] == [1, 2] and all(v.batch_size == 2 for v in videos)
    for v in videos:
        probe, _ = probe_mp4(v.mp4, decode=False)
        assert v.size == (9, 64, 96) == (probe.num_frames, probe.height, probe.width) and probe.pix_fmt == "yuv420p"
    assert steps == [(1, 3), (2, 3), (3, 3)]  # per-step progress
    frames, _ = backend.render([params(1), params(2)], lambda *_: None)  # before encoding: exact comparisons
    assert len(frames) == 2 and frames[0].dtype == np.uint8 and frames[0].shape == (9, 96, 96)  # I420: 64*3/2 rows
    assert not np.array_equal(frames[0], frames[1])
    single, _ = backend.render([params(2)], lambda *_: None)
    assert np.abs(single[0].astype(int) - frames[1]).max() <= 1  # batched = one at a time


def test_same_seed_same_video(backend):
    a = backend.render([params(7)], lambda *_: None)[0]
    b = backend.render([params(7)], lambda *_: None)[0]
    assert np.array_equal(a, b)


def test_image_to_video_uses_the_image(backend):
    text = backend.render([params(3)], lambda *_: None)[0][0]
    red, blue = backend.render([params(3, image_png=image_png((255, 0, 0))),
                                params(3, image_png=image_png((0, 0, 255)))], lambda *_: None)[0]  # a list of two
    assert red.shape == text.shape == (9, 96, 96)
    assert not np.array_equal(red, text) and not np.array_equal(red, blue)
    video = backend.generate([params(3, image_png=image_png((255, 0, 0)))], lambda *_: None)[0]
    assert video.size == (9, 64, 96)


def test_info_and_health(backend, tiny_model_root):
    info = backend.info()
    assert info.backend == "diffusers" and info.device == "cpu" and not info.cuda_available
    assert info.torch_version and str(tiny_model_root) in info.model
    backend.check()


def test_check_fails_when_backend_is_gone(tiny_model_root):
    b = create_backend(Settings(model="tiny", tiny_model_dir=tiny_model_root).resolve(gpus=0))
    with pytest.raises(RuntimeError, match="not loaded"):
        b.check()


def test_first_frame_conditioning_mechanism(backend):
    """The first latent frame is the VAE encoding of the prepared image at every denoising step and at the
    end (Wan2.2 TI2V with expand_timesteps), checked against an encoding computed here, independently."""
    import torch

    image = image_png((250, 40, 40))
    pipe = backend.i2v
    seen_inputs, decoded = [], []

    def before_transformer(module, args, kwargs):
        seen_inputs.append(kwargs["hidden_states"][:, :, 0].detach().clone())

    hook = pipe.transformer.register_forward_pre_hook(before_transformer, with_kwargs=True)
    real_decode = pipe.vae.decode

    def spy_decode(z, *a, **kw):
        decoded.append(z[:, :, 0].detach().clone())
        return real_decode(z, *a, **kw)

    pipe.vae.decode = spy_decode
    try:
        backend.generate([params(3, image_png=image)], lambda *_: None)
    finally:
        hook.remove()
        pipe.vae.decode = real_decode

    pixels = pipe.video_processor.preprocess(Image.open(io.BytesIO(image)).convert("RGB"), height=64, width=96)
    with torch.no_grad():
        z = pipe.vae.encode(pixels.unsqueeze(2).to(pipe.vae.dtype)).latent_dist.mode()[:, :, 0]
    cfg = pipe.vae.config
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1)
    expected = (z - mean) / std  # what the DiT sees for frame 0
    assert len(seen_inputs) == 3  # one transformer call per step (no CFG at guidance 1)
    for first_frame in seen_inputs:
        torch.testing.assert_close(first_frame.float(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(decoded[0].float(), expected * std + mean, rtol=1e-4, atol=1e-4)  # at the end
    assert expected.abs().mean() > 0.1  # a real signal, not zeros that would match anything


def test_each_video_of_a_batch_is_delivered_at_its_own_size(backend):
    """One denoising pass at 96x64; the MP4s at 96x64 and at 100x66 (scaled to cover, centre kept)."""
    videos = backend.generate([params(1), params(2).model_copy(update={"output_width": 100, "output_height": 66})],
                              lambda *_: None)
    sizes = [probe_mp4(v.mp4, decode=False)[0] for v in videos]
    assert [(p.width, p.height) for p in sizes] == [(96, 64), (100, 66)] == [(v.width, v.height) for v in videos]
