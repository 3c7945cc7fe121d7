"""The generator replica's start-up on the tiny model (CPU, real diffusers backend): self-check, then warm-up."""

import time

from serve_app.backends.base import GenerationParams
from serve_app.backends.diffusers import DiffusersBackend
from serve_app.deployments.generator import Generator
from serve_app.settings import Settings


def test_ready_after_the_self_check_then_the_warm_up_runs_in_the_background(tmp_path, monkeypatch, tiny_model_root):
    warm = GenerationParams(prompt="warm-up", width=64, height=64, num_frames=5, fps=8, num_inference_steps=1,
                            guidance_scale=1.0, seed=0)
    calls = []
    real_generate = DiffusersBackend.generate

    def generate(self, batch, on_progress):
        calls.append((batch[0].prompt, batch[0].width))
        return real_generate(self, batch, on_progress)

    monkeypatch.setattr(DiffusersBackend, "warmup_params", lambda self, settings: [warm, warm])
    monkeypatch.setattr(DiffusersBackend, "generate", generate)
    settings = Settings(model="tiny", tiny_model_dir=tiny_model_root, storage_url=f"file://{tmp_path}").resolve(gpus=0)
    replica = Generator.func_or_class(settings)
    status = replica.status()
    assert status.state == "ready" and status.selfcheck_sec is not None and calls[0] == ("self-check", 64)
    deadline = time.monotonic() + 120
    while replica.status().warmup == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert replica.status().warmup == "done" and replica.status().warmup_sec > 0
    assert calls[1:] == [("warm-up", 64), ("warm-up", 64)]


def test_no_warm_up_when_switched_off(tmp_path, monkeypatch, tiny_model_root):
    monkeypatch.setattr(DiffusersBackend, "warmup_params", lambda self, settings: [None])  # would fail if used
    settings = Settings(model="tiny", tiny_model_dir=tiny_model_root, storage_url=f"file://{tmp_path}",
                        selfcheck=False, warmup=False).resolve(gpus=0)
    assert Generator.func_or_class(settings).status().warmup == "off"
