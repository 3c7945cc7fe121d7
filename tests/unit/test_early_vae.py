"""The early VAE's hand-over and its spec, without FastVideo (the load itself: tests/gpu/test_fastvideo_backend.py)."""

import threading
import time

from serve_app.backends.fastvideo import early_vae
from serve_app.backends.fastvideo.startup import EARLY_VAE, early_vae as early_vae_spec, generator_kwargs
from serve_app.settings import Settings


def fresh(monkeypatch) -> early_vae._Early:
    state = early_vae._Early()
    monkeypatch.setattr(early_vae, "EARLY", state)
    return state


def test_fastvideo_loads_the_vae_itself_when_nothing_started(monkeypatch):
    assert fresh(monkeypatch).take("/models/m/vae") is None  # returns at once: nothing to wait for


def test_the_loader_waits_for_the_early_vae_and_gets_it_once_for_its_path(monkeypatch, tmp_path):
    state = fresh(monkeypatch)
    (tmp_path / "m" / "vae").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "m")
    state.report["early_vae"] = "loading"
    vae = object()

    def finish():
        state.vae, state.vae_path = vae, str(tmp_path / "m" / "vae")
        state.report["early_vae"] = "ready: loaded in 1.0 s"
        state.done.set()

    threading.Timer(0.3, finish).start()
    assert state.take(str(tmp_path / "link" / "vae")) is vae  # waited; the same folder through a link
    assert state.report["early_vae"].startswith("used: loaded")
    assert state.take(str(tmp_path / "link" / "vae")) is None  # handed over once


def test_another_models_vae_is_not_handed_over(monkeypatch):
    state = fresh(monkeypatch)
    state.vae, state.vae_path, state.report["early_vae"] = object(), "/models/a/vae", "ready: loaded"
    state.done.set()
    assert state.take("/models/b/vae") is None and "not used: FastVideo asked for /models/b/vae" in \
        state.report["early_vae"]


def test_a_failed_early_load_leaves_the_load_to_fastvideo(monkeypatch):
    state = fresh(monkeypatch)
    state.report["early_vae"] = "failed, loaded as usual: OSError: no such file"
    state.done.set()
    assert state.take("/models/a/vae") is None and state.report["early_vae"].startswith("failed")


def test_the_spec_is_what_the_replica_will_ask_for():
    s = Settings(vae_compile_blocks="up-blocks", default_width=1280, default_height=704).resolve(gpus=1)
    kwargs = generator_kwargs(s.fastvideo, "fit-32gb")
    assert kwargs["text_encoder_cpu_offload"] is True and kwargs["num_gpus"] == 1
    target, call = early_vae_spec(s.fastvideo, s.models, s.generation, "/m", kwargs)
    spec = call["spec"]  # early_vae.start(spec=...)
    assert target == EARLY_VAE and spec["generator_kwargs"] == kwargs
    assert (spec["blocks"], spec["width"], spec["height"], spec["compiled"]) == ("up-blocks", 1280, 704, True)
    early_vae.EarlyVaeSpec.model_validate(spec)  # what the worker parses
    off = Settings(torch_compile=False, warmup=False).resolve(gpus=1)
    spec = early_vae_spec(off.fastvideo, off.models, off.generation, "/m", kwargs)[1]["spec"]
    assert spec["compiled"] is False and spec["warm_up"] is False


def test_no_early_vae_when_off_or_on_the_cpu():
    for settings in (Settings(early_vae=False), Settings(vae_cpu_offload=True)):
        s = settings.resolve(gpus=1)
        assert early_vae_spec(s.fastvideo, s.models, s.generation, "/m", generator_kwargs(s.fastvideo, "speed")) \
            is None


def test_the_prestarted_worker_calls_it_as_the_backend_says(monkeypatch):
    """prestart.start_early(target, kwargs) with what `early_vae` returns reaches early_vae.start."""
    from serve_app.backends.fastvideo.prestart import start_early

    state, started = fresh(monkeypatch), []
    monkeypatch.setattr(early_vae, "_patch_vae_loader", lambda: started.append("patched"))
    monkeypatch.setattr(early_vae, "_run", lambda spec: started.append(spec.width))
    s = Settings(default_width=1280, default_height=704).resolve(gpus=1)
    assert start_early(*early_vae_spec(s.fastvideo, s.models, s.generation, "/m",
                                       generator_kwargs(s.fastvideo, "speed")))
    deadline = time.monotonic() + 10
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started == ["patched", 1280] and state.report["early_vae"] == "loading"


def test_an_early_vae_that_never_finishes_does_not_hang_the_start(monkeypatch):
    state = fresh(monkeypatch)
    monkeypatch.setattr(early_vae, "WAIT_S", 0.2)
    state.report["early_vae"] = "loading"
    assert state.take("/models/a/vae") is None and state.report["early_vae"] == "not used: not ready after 0.2 s"
