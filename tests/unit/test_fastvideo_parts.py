"""The FastVideo backend's CPU-testable parts (the GPU parts are in tests/gpu, run by scripts/gpu_check.sh)."""

import io

import numpy as np
from PIL import Image

from serve_app.backends.fastvideo.paths import fastvideo_model_path
from serve_app.backends.fastvideo.request import image_tensor
from serve_app.models.layout import MODEL_FOLDER_NAME
from serve_app.settings import Settings


def test_model_folder_keeps_a_name_fastvideo_resolves(tmp_path):
    good = tmp_path / MODEL_FOLDER_NAME
    good.mkdir()
    assert fastvideo_model_path(good, tmp_path / "links") == good
    # An HF cache snapshot is named by its hash: FastVideo would pick another pipeline config.
    snapshot = tmp_path / "hub" / "models--FastVideo--FastWan2.2-TI2V-5B-Diffusers" / "snapshots" / "0a1b2c"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    link = fastvideo_model_path(snapshot, tmp_path / "links")
    assert link.name == MODEL_FOLDER_NAME and link.is_symlink()
    assert (link / "model_index.json").read_text() == "{}"
    assert fastvideo_model_path(snapshot, tmp_path / "links") == link  # idempotent
    other = tmp_path / "other-snapshot"
    other.mkdir()
    assert fastvideo_model_path(other, tmp_path / "links").resolve() == other.resolve()  # re-pointed


def test_image_tensor_is_vae_input():
    buf = io.BytesIO()
    arr = np.zeros((64, 96, 3), np.uint8)
    arr[:, :48] = 255
    Image.fromarray(arr).save(buf, format="PNG")
    t = image_tensor(buf.getvalue())
    assert tuple(t.shape) == (1, 3, 1, 64, 96)
    assert float(t[0, 0, 0, 0, 0]) == 1.0 and float(t[0, 0, 0, 0, -1]) == -1.0


def test_gpu_default_is_fastvideo_ray_when_installed(monkeypatch):
    import serve_app.settings as settings_module
    from serve_app.app import generator_options

    monkeypatch.setattr(settings_module, "_fastvideo_installed", lambda: True)
    s = Settings().resolve(gpus=1)
    assert (s.backend, s.fastvideo_executor, s.device) == ("fastvideo", "ray", "cuda")
    opts = generator_options(s)
    assert opts["ray_actor_options"]["num_gpus"] == 0 and opts["placement_group_bundles"] == [{"CPU": 1, "GPU": 1}]
    assert Settings().resolve(gpus=0).backend == "diffusers"  # no GPU: the CPU fallback


def test_memory_profile_follows_the_card(monkeypatch):
    import serve_app.backends.fastvideo.memory as fv

    monkeypatch.setattr(fv, "gpu_memory_gb", lambda: 34.2)  # an RTX 5090 reports about 34 GB
    assert fv.memory_profile(Settings().fastvideo) == "fit-32gb"
    monkeypatch.setattr(fv, "gpu_memory_gb", lambda: 85.0)  # H100
    assert fv.memory_profile(Settings().fastvideo) == "speed"
    assert fv.memory_profile(Settings(gpu_memory_limit_gb=32).fastvideo) == "fit-32gb"  # a cap counts as the card
    assert fv.memory_profile(Settings(memory_profile="fit-32gb").fastvideo) == "fit-32gb"
    monkeypatch.setattr(fv, "gpu_memory_gb", lambda: None)
    assert fv.memory_profile(Settings().fastvideo) == "speed"
