"""The FastVideo backend on a GPU with the tiny model: Ray executor, self-check, seeds, TI2V, streamed MP4s."""

import io
import os
import tempfile

import numpy as np
import pytest
from PIL import Image

from serve_app.backends.base import GenerationParams
from serve_app.settings import Settings


@pytest.fixture(scope="module")
def backend(tiny_model_root):
    import ray

    from serve_app.backends.fastvideo import FastVideoBackend

    os.environ.setdefault("FASTVIDEO_ATTENTION_BACKEND", "TORCH_SDPA")
    ray.init(include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="fwg-", dir="/tmp"))
    settings = Settings(backend="fastvideo", model="tiny", tiny_model_dir=tiny_model_root, device="cuda",
                        fastvideo_executor=os.environ.get("FASTWAN_TEST_EXECUTOR", "ray"),
                        encode_in_worker=False).resolve(gpus=1)  # frames, to compare exactly; streaming below
    b = FastVideoBackend(settings)
    b.load()
    yield b
    b.close()
    ray.shutdown()


def params(seed, image=None, **kw):
    base = dict(prompt="a red car on a street", width=256, height=128, num_frames=17, fps=16,
                num_inference_steps=3, guidance_scale=1.0, seed=seed, image_png=image)
    return GenerationParams(**{**base, **kw})


def png(color, size=(256, 128)):
    img = Image.new("RGB", size, color)
    img.paste(Image.new("RGB", (size[0] // 2, size[1]), tuple(255 - c for c in color)), (0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_self_check_reports_the_worker_and_the_fastwan_config(backend):
    info = backend.info()
    assert info.backend == "fastvideo" and info.cuda_available
    assert info.details["executor check"] == "worker answered"
    assert info.device_name and info.device_name != "unknown GPU"
    assert type(backend.generator.fastvideo_args.pipeline_config).__name__ == "FastWan2_2_TI2V_5B_Config"
    backend.check()


def test_text_to_video_frames_and_seeds(backend):
    steps = []
    a, b = backend.generate([params(1), params(2)], lambda d, t: steps.append((d, t)))
    assert a.size == (17, 128, 256) and a.frames.dtype == np.uint8
    assert steps == [(1, 2), (2, 2)] and a.batch_size == 2
    again = backend.generate([params(1)], lambda *_: None)[0]
    assert np.array_equal(a.frames, again.frames)  # each request keeps its own seed inside a batch
    assert not np.array_equal(a.frames, b.frames)
    assert a.peak_vram_gb and a.peak_vram_gb > 0


def test_first_frame_conditioning_mechanism(backend):
    """The first latent frame is the VAE encoding of the prepared image at every step and at the end."""
    import torch

    from serve_app.backends import fastvideo_ti2v
    from serve_app.backends.fastvideo import image_tensor

    image = png((250, 40, 40))
    batch = backend.forward_batch(params(5, image))
    batch.extra[fastvideo_ti2v.TI2V_TRACE] = True
    result = backend._forward(batch)
    trace = result["ti2v_trace"]
    expected = backend._rpc(fastvideo_ti2v.encode_first_frame, image=image_tensor(image))
    assert len(trace["steps"]) == 4  # 3 DMD steps + the final latents
    # the latents are kept in their own dtype (bf16): compare at that precision
    expected = expected.to(getattr(torch, trace["dtype"].removeprefix("torch."))).float()
    for first_frame in trace["steps"]:
        torch.testing.assert_close(first_frame, expected, rtol=2**-7, atol=1e-5)  # at most 1 bf16 ulp
    text = backend.generate([params(5)], lambda *_: None)[0].frames
    red = result["frames"][0]
    blue = backend.generate([params(5, png((40, 40, 250)))], lambda *_: None)[0].frames
    assert red.shape == text.shape == blue.shape
    assert not np.array_equal(red, text) and not np.array_equal(red, blue)


def test_streamed_mp4_holds_the_stock_decode(backend, tmp_path):
    """Decoding chunk by chunk into the worker's encoder gives the MP4 of the stock full decode."""
    if backend.settings.fastvideo_executor != "ray":
        pytest.skip("only the Ray executor encodes in the worker")
    from serve_app.media.video import encode_mp4, probe_mp4

    frames = backend._forward(backend.forward_batch(params(9)))["frames"][0]
    encode = dict(fps=16, crf=0, preset="veryfast")  # lossless: x264 with threads is not bit-reproducible
    streamed = backend._forward(backend.forward_batch(params(9)), encode)
    assert streamed["frames"] is None and streamed["shape"] == (17, 128, 256)
    assert streamed["stages"]["encode_tail"] >= 0
    encode_mp4(frames, 16, tmp_path / "stock.mp4", crf=0, preset="veryfast")
    probe, got = probe_mp4(streamed["mp4"])
    _, want = probe_mp4((tmp_path / "stock.mp4").read_bytes())
    assert (probe.codec, probe.num_frames, probe.width, probe.height) == ("h264", 17, 256, 128)
    assert np.array_equal(got, want)  # the same frames went in


def test_generate_streams_when_asked(backend):
    if backend.settings.fastvideo_executor != "ray":
        pytest.skip("only the Ray executor encodes in the worker")
    backend.settings.encode_in_worker = True
    try:
        video = backend.generate([params(4)], lambda *_: None)[0]
    finally:
        backend.settings.encode_in_worker = False
    assert video.frames is None and video.size == (17, 128, 256) and video.mp4[4:8] == b"ftyp"
