"""The generator replica's start-up on the tiny model (CPU, real diffusers backend): a constructor that
returns at once, the load in the background, self-check, then warm-up; a failed load reported and unhealthy."""

import asyncio
import threading
import time

import pytest

from serve_app.contracts import GenerationParams
from serve_app.backends.diffusers import DiffusersBackend
from serve_app.deployments.generator import Generator
from serve_app.settings import Settings


def warm_up_calls(monkeypatch):
    warm = GenerationParams(prompt="warm-up", width=64, height=64, num_frames=5, fps=8, num_inference_steps=1,
                            guidance_scale=1.0, seed=0)
    calls = []
    real_generate = DiffusersBackend.generate

    def generate(self, batch, on_progress):
        calls.append((batch[0].prompt, batch[0].width))
        return real_generate(self, batch, on_progress)

    monkeypatch.setattr(DiffusersBackend, "warmup_params", lambda self: [warm, warm])
    monkeypatch.setattr(DiffusersBackend, "generate", generate)
    return calls


def warmed(replica, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while replica.status().warmup == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    return replica.status()


def test_ready_after_the_self_check_then_the_warm_up_runs_in_the_background(tmp_path, monkeypatch, tiny_model_root):
    """With /ready turning green at once (ready_after_warmup off), the self-check comes first."""
    calls = warm_up_calls(monkeypatch)
    settings = Settings(model="tiny", tiny_model_dir=tiny_model_root, storage_url=f"file://{tmp_path}",
                        ready_after_warmup=False).resolve(gpus=0)
    replica = Generator.func_or_class(settings)
    status = settled(replica)
    assert status.state == "ready" and status.selfcheck_sec is not None and calls[0] == ("self-check", 64)
    status = warmed(replica)
    assert status.warmup == "done" and status.warmup_sec > 0
    assert calls[1:] == [("warm-up", 64), ("warm-up", 64)]


def test_the_warm_up_is_the_self_check_when_ready_waits_for_it(tmp_path, monkeypatch, tiny_model_root):
    """/ready waits for the warm-up (the default): it runs the same path, so no separate self-check delays it."""
    calls = warm_up_calls(monkeypatch)
    settings = Settings(model="tiny", tiny_model_dir=tiny_model_root, storage_url=f"file://{tmp_path}").resolve(gpus=0)
    replica = Generator.func_or_class(settings)
    assert settled(replica).state == "ready"
    status = warmed(replica)
    assert status.state == "ready" and status.warmup == "done" and status.selfcheck_sec is None
    assert calls == [("warm-up", 64), ("warm-up", 64)]


def test_a_failed_warm_up_that_was_the_self_check_fails_the_replica(tmp_path, monkeypatch, tiny_model_root):
    def broken_warm_up(self):
        raise RuntimeError("the text-to-video warm-up produced frames of shape None")

    monkeypatch.setattr(DiffusersBackend, "warmup_params", lambda self: ["one"])
    monkeypatch.setattr(DiffusersBackend, "warm_up", broken_warm_up)
    settings = Settings(model="tiny", tiny_model_dir=tiny_model_root, storage_url=f"file://{tmp_path}").resolve(gpus=0)
    replica = Generator.func_or_class(settings)
    settled(replica)
    status = warmed(replica)
    assert status.state == "failed" and status.warmup == "failed" and "frames of shape None" in status.reason
    refuses_work(replica, "failed its warm-up", "not serving: the model failed its warm-up")


def test_a_failed_warm_up_only_slows_a_replica_that_passed_its_self_check(tmp_path, monkeypatch, tiny_model_root):
    monkeypatch.setattr(DiffusersBackend, "warmup_params", lambda self: ["one"])
    monkeypatch.setattr(DiffusersBackend, "warm_up", lambda self: 1 / 0)
    settings = Settings(model="tiny", tiny_model_dir=tiny_model_root, storage_url=f"file://{tmp_path}",
                        ready_after_warmup=False).resolve(gpus=0)
    replica = Generator.func_or_class(settings)
    settled(replica)
    status = warmed(replica)
    assert status.state == "ready" and status.warmup == "failed" and status.selfcheck_sec is not None
    replica.check_health()


def test_no_warm_up_when_switched_off(tmp_path, monkeypatch, tiny_model_root):
    monkeypatch.setattr(DiffusersBackend, "warmup_params", lambda self: [None])  # would fail if used
    settings = Settings(model="tiny", tiny_model_dir=tiny_model_root, storage_url=f"file://{tmp_path}",
                        selfcheck=False, warmup=False).resolve(gpus=0)
    assert settled(Generator.func_or_class(settings)).warmup == "off"


def settled(replica, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while replica.status().state == "loading" and time.monotonic() < deadline:
        time.sleep(0.05)
    return replica.status()


def tiny_settings(tmp_path, tiny_model_root, **kw):
    return Settings(model="tiny", tiny_model_dir=tiny_model_root, storage_url=f"file://{tmp_path}",
                    warmup=False, **kw).resolve(gpus=0)


def refuses_work(replica, health_error: str, job_error: str) -> None:
    """A failed replica fails its health check (Serve replaces it) and refuses jobs with the cause."""
    with pytest.raises(RuntimeError, match=health_error):
        replica.check_health()
    params = GenerationParams(prompt="x", width=64, height=64, num_frames=5, fps=8, num_inference_steps=1,
                              guidance_scale=1.0, seed=1)
    with pytest.raises(RuntimeError, match=job_error):
        asyncio.run(collect(replica, params))


async def collect(replica, params):
    return [event async for event in replica.generate([params])]


def test_status_answers_while_the_model_loads_and_requests_wait_for_it(tmp_path, monkeypatch, tiny_model_root):
    release = threading.Event()
    real_load = DiffusersBackend.load

    def slow_load(self):
        assert release.wait(60)
        real_load(self)

    monkeypatch.setattr(DiffusersBackend, "load", slow_load)
    started = time.perf_counter()
    replica = Generator.func_or_class(tiny_settings(tmp_path, tiny_model_root))
    assert time.perf_counter() - started < 5  # the constructor does not wait for the load
    status = replica.status()
    assert status.state == "loading" and "loading the model" in status.reason and not status.ready
    replica.check_health()  # loading is healthy
    params = GenerationParams(prompt="x", width=64, height=64, num_frames=5, fps=8, num_inference_steps=2,
                              guidance_scale=1.0, seed=1)
    threading.Timer(0.5, release.set).start()
    events = asyncio.run(collect(replica, params))  # waits for the load, then runs
    assert events[-1].videos[0].size == (5, 64, 64)
    assert replica.status().state == "ready" and replica.status().ready_at is not None


def test_a_failed_load_is_reported_fails_health_and_refuses_work(tmp_path, monkeypatch, tiny_model_root):
    def broken_load(self):
        raise OSError("model_index.json not found in /models/nowhere")

    monkeypatch.setattr(DiffusersBackend, "load", broken_load)
    replica = Generator.func_or_class(tiny_settings(tmp_path, tiny_model_root))
    status = settled(replica)
    assert status.state == "failed" and "model_index.json not found" in status.reason
    refuses_work(replica, "model_index.json not found", "not serving: the model failed to load or self-check")


def test_a_job_sent_during_the_warm_up_waits_for_it_and_ready_never_precedes_it(tmp_path, monkeypatch,
                                                                                 tiny_model_root):
    """The warm-up owns the device (it may run a shortened schedule): a job starts only after it, and the
    replica's first "ready" already says "warming up", so /ready cannot pass it for one at full speed."""
    spans, seen = {}, []

    def slow_warm_up(self):
        spans["warm-up"] = [time.monotonic()]
        time.sleep(1.5)
        spans["warm-up"].append(time.monotonic())
        return {"text-to-video": 1.5}

    real_generate = DiffusersBackend.generate

    def generate(self, batch, on_progress):
        if batch[0].prompt == "a job":
            spans["job"] = time.monotonic()
        return real_generate(self, batch, on_progress)

    monkeypatch.setattr(DiffusersBackend, "warmup_params", lambda self: ["one"])
    monkeypatch.setattr(DiffusersBackend, "warm_up", slow_warm_up)
    monkeypatch.setattr(DiffusersBackend, "generate", generate)
    settings = Settings(model="tiny", tiny_model_dir=tiny_model_root, storage_url=f"file://{tmp_path}",
                        selfcheck=False).resolve(gpus=0)
    replica = Generator.func_or_class(settings)
    while not spans.get("warm-up"):
        status = replica.status()
        seen.append((status.state, status.warmup))
        time.sleep(0.005)
    assert ("ready", "off") not in seen and ("ready", "running") in [(s.state, s.warmup) for s in [replica.status()]]
    job = GenerationParams(prompt="a job", width=64, height=64, num_frames=5, fps=8, num_inference_steps=1,
                           guidance_scale=1.0, seed=1)
    events = asyncio.run(collect(replica, job))
    assert spans["job"] >= spans["warm-up"][1]  # it waited for the warm-up to end
    assert type(events[-1]).__name__ == "ResultEvent" and replica.status().warmup == "done"
