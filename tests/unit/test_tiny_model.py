import hashlib
import json

from serve_app.models.layout import MODEL_FOLDER_NAME
from serve_app.models.tiny import build


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_tiny_model_layout_size_and_determinism(tiny_model_root, tmp_path):
    folder = tiny_model_root / MODEL_FOLDER_NAME
    # The folder name is what makes FastVideo pick the FastWan2.2 TI2V pipeline config.
    assert folder.name == "FastWan2.2-TI2V-5B-Diffusers"
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (folder / part).is_dir(), part
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "WanDMDPipeline" and "_diffusers_version" in index
    assert index["expand_timesteps"] is True
    scheduler = json.loads((folder / "scheduler/scheduler_config.json").read_text())
    assert not {"shift_terminal", "sigma_min", "sigma_max"} & scheduler.keys()
    vae = json.loads((folder / "vae/config.json").read_text())
    assert (vae["z_dim"], vae["patch_size"], vae["scale_factor_spatial"], vae["is_residual"]) == (48, 2, 16, True)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 10 * 1024 * 1024
    again = build(tmp_path)  # same seed, same bytes
    assert digest(again) == digest(folder)
