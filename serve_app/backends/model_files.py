"""Helpers the backends share: where the model is, and what the device is called."""

from __future__ import annotations

import platform
from pathlib import Path

from serve_app.settings import ModelSettings


def resolve_model_path(settings: ModelSettings) -> Path:
    """'tiny' -> the built-in tiny model (built if missing); a folder -> itself; else an HF id in the HF cache."""
    if settings.uses_tiny_model:
        from serve_app.models.tiny import ensure

        return ensure(settings.tiny_model_dir)
    local = Path(settings.model).expanduser()
    if local.is_dir():
        if not (local / "model_index.json").exists():
            raise FileNotFoundError(f"model folder {local} has no model_index.json")
        return local
    from huggingface_hub import snapshot_download

    # Resumable and cached: a restarted container continues a partial download.
    return Path(snapshot_download(settings.model))


def device_description(device: str) -> str:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.cuda.current_device())
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
