"""A model folder name FastVideo resolves to the FastWan2.2 pipeline config.

FastVideo 0.2.1 picks its pipeline config from the model folder's last path component, so an HF cache
snapshot (`.../snapshots/<hash>`) or any other folder name would silently select another config.
"""

from __future__ import annotations

from pathlib import Path

from serve_app.models.layout import MODEL_FOLDER_NAME

FASTVIDEO_NAMES = {n.lower() for n in (MODEL_FOLDER_NAME, "FastWan2.2-TI2V-5B-FullAttn-Diffusers")}
EXPECTED_CONFIG = "FastWan2_2_TI2V_5B_Config"


def fastvideo_model_path(path: Path, link_root: Path) -> Path:
    """`path` itself if FastVideo resolves its name, else a symlink named as FastVideo expects."""
    path = Path(path)
    if path.name.lower() in FASTVIDEO_NAMES:
        return path
    link = Path(link_root) / MODEL_FOLDER_NAME
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == path.resolve():
            return link
        link.unlink()
    link.symlink_to(path.resolve(), target_is_directory=True)
    return link
