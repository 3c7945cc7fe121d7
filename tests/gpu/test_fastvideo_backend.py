"""The FastVideo backend on a GPU with the tiny model: Ray executor, self-check, seeds, TI2V, streamed MP4s."""

import io
import os
import tempfile

import numpy as np
import pytest
from PIL import Image

from serve_app.contracts import GenerationParams
from serve_app.settings import Settings


@pytest.fixture(scope="module")
def backend(tiny_model_root):
    import ray

    from serve_app.backends import create_backend

    os.environ.setdefault("FASTVIDEO_ATTENTION_BACKEND", "TORCH_SDPA")
    ray.init(include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="fwg-", dir="/tmp"))
    settings = Settings(backend="fastvideo", model="tiny", tiny_model_dir=tiny_model_root, device="cuda",
                        fastvideo_executor=os.environ.get("FASTWAN_TEST_EXECUTOR", "ray"),
                        encode_in_worker=False).resolve(gpus=1)  # frames, to compare exactly; streaming below
    b = create_backend(settings)
    b.load()
    yield b
    b.close()
    ray.shutdown()


def frames_of(backend, p):
    """The worker's uint8 I420 frames for one request (before any MP4 encode): exact comparisons."""
    return backend.forward(backend.forward_batch(p)).frames


def install_tracing_stage(wrapper) -> str:
    """In the worker: the TI2V stage, recording the first latent frame at each step (the stage's test seam)."""
    from serve_app.backends.fastvideo.stages import get_stage, replace_stage
    from serve_app.backends.fastvideo.ti2v import Ti2vDmdDenoisingStage

    class Tracing(Ti2vDmdDenoisingStage):
        def observe_first_frame(self, batch, step, latents):
            self.trace.append((str(latents.dtype), latents[:, 0].float().cpu()))

    pipeline = wrapper.worker.pipeline
    old = get_stage(pipeline, "denoising_stage")
    tracing = Tracing(old.transformer, old.scheduler, old.vae)
    tracing.trace, tracing.replaced = [], old
    replace_stage(pipeline, "denoising_stage", tracing)
    return type(old).__name__


def take_trace(wrapper) -> list:
    """In the worker: the recorded steps, and the stage put back as it was."""
    from serve_app.backends.fastvideo.stages import get_stage, replace_stage

    pipeline = wrapper.worker.pipeline
    tracing = get_stage(pipeline, "denoising_stage")
    replace_stage(pipeline, "denoising_stage", tracing.replaced)
    return tracing.trace


def encode_first_frame(wrapper, image):
    """In the worker: the VAE encoding of a prepared image, computed on its own."""
    from serve_app.backends.fastvideo.stages import get_stage

    return get_stage(wrapper.worker.pipeline, "denoising_stage").encode_first_frame(image)[:, :, 0].float().cpu()


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


def test_the_attention_kernel_is_chosen_on_this_card_and_lossless(backend):
    """auto: the fastest fused SDPA kernel that runs here goes first; the others agree with it within bf16."""
    from serve_app.backends.fastvideo import worker_ops

    chosen = backend.options["attention_kernel"]
    timings = backend.options["attention_ms"]
    assert chosen in timings and timings[chosen] == min(timings.values()), backend.options
    for name, diff in backend.options["attention_max_diff"].items():
        assert diff < 0.05, (name, diff)  # inputs are N(0,1): outputs agree to bf16 rounding
    for name in timings:  # a named kernel that runs here is put first as asked
        assert backend.run_in_worker(worker_ops.choose_attention_kernel, preference=name, tokens=512)[
            "attention_kernel"] == name
    backend.run_in_worker(worker_ops.choose_attention_kernel, preference=chosen, tokens=512)


def test_text_to_video_frames_and_seeds(backend):
    from serve_app.media.video import probe_mp4

    steps = []
    a, b = backend.generate([params(1), params(2)], lambda d, t: steps.append((d, t)))
    assert a.size == (17, 128, 256) and probe_mp4(a.mp4, decode=False)[0].num_frames == 17
    assert steps == [(1, 2), (2, 2)] and a.batch_size == 2
    assert a.peak_vram_gb and a.peak_vram_gb > 0
    one, again, two = frames_of(backend, params(1)), frames_of(backend, params(1)), frames_of(backend, params(2))
    assert one.dtype == np.uint8 and one.shape == (17, 192, 256)  # I420 planes: 128 * 3 // 2 rows
    assert np.array_equal(one, again)  # each request keeps its own seed
    assert not np.array_equal(one, two)


def test_first_frame_conditioning_mechanism(backend):
    """The first latent frame is the VAE encoding of the prepared image at every step and at the end."""
    import torch

    from serve_app.backends.fastvideo.request import image_tensor

    image = png((250, 40, 40))
    assert backend.run_in_worker(install_tracing_stage) == "Ti2vDmdDenoisingStage"
    try:
        red = frames_of(backend, params(5, image))
    finally:
        trace = backend.run_in_worker(take_trace)
    expected = backend.run_in_worker(encode_first_frame, image=image_tensor(image))
    assert len(trace) == 4  # 3 DMD steps + the final latents
    for dtype, first_frame in trace:
        # the latents are kept in their own dtype (bf16): compare at that precision
        want = expected.to(getattr(torch, dtype.removeprefix("torch."))).float()
        torch.testing.assert_close(first_frame, want, rtol=2**-7, atol=1e-5)  # at most 1 bf16 ulp
    text = frames_of(backend, params(5))
    blue = frames_of(backend, params(5, png((40, 40, 250))))
    assert red.shape == text.shape == blue.shape
    assert not np.array_equal(red, text) and not np.array_equal(red, blue)


def test_streamed_mp4_holds_the_stock_decode(backend, tmp_path):
    """Decoding chunk by chunk into the worker's encoder gives the MP4 of the stock full decode."""
    if backend.fastvideo.fastvideo_executor != "ray":
        pytest.skip("only the Ray executor encodes in the worker")
    from serve_app.backends.fastvideo.worker_ops import Delivery
    from serve_app.media.video import encode_mp4, probe_mp4

    frames = frames_of(backend, params(9))
    # lossless: x264 with threads is not bit-reproducible
    encode = Delivery(width=256, height=128, encode=True, fps=16, crf=0, preset="veryfast")
    streamed = backend.forward(backend.forward_batch(params(9)), encode)
    assert streamed.frames is None and streamed.shape == (17, 128, 256)
    assert streamed.encode_tail_s >= 0
    encode_mp4(frames, 16, tmp_path / "stock.mp4", crf=0, preset="veryfast")
    probe, got = probe_mp4(streamed.mp4)
    _, want = probe_mp4((tmp_path / "stock.mp4").read_bytes())
    assert (probe.codec, probe.num_frames, probe.width, probe.height) == ("h264", 17, 256, 128)
    assert np.array_equal(got, want)  # the same frames went in


def test_generate_streams_when_asked(backend):
    if backend.fastvideo.fastvideo_executor != "ray":
        pytest.skip("only the Ray executor encodes in the worker")
    backend.fastvideo.encode_in_worker = True
    try:
        video = backend.generate([params(4)], lambda *_: None)[0]
    finally:
        backend.fastvideo.encode_in_worker = False
    assert "encode_tail" in video.stages and video.size == (17, 128, 256) and video.mp4[4:8] == b"ftyp"


def test_a_size_the_model_does_not_make_is_delivered_exactly(backend):
    """720x1280's little brother: 120x200 is made at 128x192 and fitted (cover, centre) to 120x200."""
    from serve_app.media.video import probe_mp4

    p = params(6, width=128, height=192).model_copy(update={"output_width": 120, "output_height": 200})
    video = backend.generate([p], lambda *_: None)[0]
    probe, _ = probe_mp4(video.mp4, decode=False)
    assert (probe.width, probe.height, probe.num_frames) == (120, 200, 17) == (video.width, video.height, 17)
