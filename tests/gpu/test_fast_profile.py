"""The fast profile on a GPU with the tiny model: FP8 DiT linears and a (random-weight) light decoder, streamed."""

import os
import tempfile

import numpy as np
import pytest

from serve_app.settings import Settings
from tests.gpu.test_fastvideo_backend import frames_of, params


@pytest.fixture(scope="module")
def fast_backend(tiny_model_root, tmp_path_factory):
    import ray

    from serve_app.backends import create_backend
    from serve_app.models.light_decoder import build

    os.environ.setdefault("FASTVIDEO_ATTENTION_BACKEND", "TORCH_SDPA")
    light = build(tmp_path_factory.mktemp("light") / "light-decoder.pth")
    ray.init(include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="fwf-", dir="/tmp"))
    settings = Settings(backend="fastvideo", model="tiny", tiny_model_dir=tiny_model_root, device="cuda",
                        speed_profile="fast", light_decoder_path=light, encode_in_worker=False).resolve(gpus=1)
    b = create_backend(settings)
    b.load()
    yield b
    b.close()
    ray.shutdown()


def test_the_fast_profile_says_what_it_runs(fast_backend):
    options = fast_backend.info().details
    assert options["speed_profile"] == "fast"
    assert options["dit_fp8"] == "on" and options["fp8_linears"] > 0, options  # sm_89+ (this test's cards)
    assert options["light_decoder"].endswith("light-decoder.pth") and options["light_decoder_params_m"] > 5


def test_the_light_decoder_streams_the_frames_it_decodes(fast_backend, tmp_path):
    from serve_app.backends.fastvideo.worker_ops import Delivery
    from serve_app.media.video import encode_mp4, probe_mp4

    frames = frames_of(fast_backend, params(5))
    assert frames.shape == (17, 128 * 3 // 2, 256)
    streamed = fast_backend.forward(fast_backend.forward_batch(params(5)),
                                    Delivery(width=256, height=128, encode=True, fps=16, crf=0))
    encode_mp4(frames, 16, tmp_path / "frames.mp4", crf=0)
    probe, got = probe_mp4(streamed.mp4)
    _, want = probe_mp4((tmp_path / "frames.mp4").read_bytes())
    assert probe.num_frames == 17, probe
    assert np.array_equal(got, want), _differ(got, want)


def test_seeds_still_decide_the_video(fast_backend):
    a, b, c = (frames_of(fast_backend, params(s)) for s in (1, 1, 2))
    # the same seed twice (the message, built only on a failure, says whether deterministic cuDNN makes them equal)
    assert np.array_equal(a, b), _differ(a, b) + _with_deterministic_cudnn(fast_backend)
    assert not np.array_equal(a, c), "seeds 1 and 2 gave the same frames"


def set_cudnn_deterministic(wrapper, enabled: bool) -> bool:
    """In the worker: cuDNN's deterministic flag (off by default: it may pick engines that sum in any order)."""
    import torch

    before, torch.backends.cudnn.deterministic = torch.backends.cudnn.deterministic, enabled
    return before


def _with_deterministic_cudnn(backend) -> str:
    before = backend.run_in_worker(set_cudnn_deterministic, enabled=True)
    try:
        x, y = (frames_of(backend, params(1)) for _ in range(2))
    finally:
        backend.run_in_worker(set_cudnn_deterministic, enabled=before)
    return f"; with deterministic cuDNN: {_differ(x, y) if not np.array_equal(x, y) else 'equal'}"


def _differ(x: np.ndarray, y: np.ndarray) -> str:
    """How far apart two frame arrays are: a few levels is rounding, tens a different video (run 44 failed here
    without saying which)."""
    if x.shape != y.shape:
        return f"shapes {x.shape} and {y.shape}"
    diff = np.abs(x.astype(int) - y.astype(int))
    return f"{int((diff > 0).sum())} of {diff.size} values differ: max {int(diff.max())}, mean {diff.mean():.4f}"
