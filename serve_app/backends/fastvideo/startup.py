"""What the FastVideo backend's start-up decides before FastVideo is imported, and checks after its warm-up.

`generator_kwargs` are the VideoGenerator's arguments; the prestarted GPU worker gets the same ones so it
can load the VAE while the replica imports FastVideo (`early_vae`, early_vae.py). Imports no FastVideo.
"""

from __future__ import annotations

from pathlib import Path

from serve_app.contracts import GenerationParams
from serve_app.settings import FastVideoSettings, GenerationSettings, ModelSettings

EARLY_VAE = "serve_app.backends.fastvideo.early_vae:start"


def generator_kwargs(cfg: FastVideoSettings, profile: str) -> dict:
    """VideoGenerator.from_pretrained's keyword arguments for these settings and memory profile."""
    te_offload = cfg.text_encoder_cpu_offload if cfg.text_encoder_cpu_offload is not None else profile == "fit-32gb"
    gpus = cfg.gpus_per_replica  # each video over all of them: the DiT split by sequence (Ulysses attention)
    return dict(num_gpus=gpus, sp_size=gpus, distributed_executor_backend=cfg.fastvideo_executor,
                dit_cpu_offload=cfg.dit_cpu_offload, dit_layerwise_offload=cfg.dit_layerwise_offload,
                text_encoder_cpu_offload=te_offload, image_encoder_cpu_offload=True, vae_cpu_offload=cfg.vae_cpu_offload,
                pin_cpu_memory=cfg.pin_cpu_memory, text_encoder_precisions=(cfg.text_encoder_precision,))


def early_vae(cfg: FastVideoSettings, models: ModelSettings, generation: GenerationSettings, model_path: Path,
              kwargs: dict) -> tuple[str, dict] | None:
    """The prestarted worker's early work (prestart.start_early): the VAE as `_configure_worker` sets it up,
    warmed up at the default size when the warm-up would do it. None when off or the VAE lives on the CPU."""
    if not cfg.early_vae or cfg.vae_cpu_offload:
        return None
    from serve_app.backends.fastvideo.early_vae import EarlyVaeSpec

    spec = EarlyVaeSpec(
        model_path=str(model_path), generator_kwargs=kwargs, vae_precision=cfg.vae_precision,
        channels_last=cfg.vae_channels_last, fused=cfg.vae_fused_kernels, compiled=cfg.torch_compile and cfg.vae_compile,
        blocks=cfg.vae_compile_blocks, compile_cache_dir=str(cfg.compile_cache_dir), warm_compile_pool=cfg.torch_compile,
        width=generation.default_width, height=generation.default_height, warm_up=models.warmup and cfg.torch_compile)
    return EARLY_VAE, {"spec": spec.model_dump()}


def check_frames(frames, params: GenerationParams, kind: str) -> None:
    """The warm-up's frames (I420 planes: T, H * 3 / 2, W) are frames of the size asked for: it may stand in
    for the self-check."""
    expected = (params.height * 3 // 2, params.width)
    if frames is None or frames.shape[0] == 0 or tuple(frames.shape[1:]) != expected:
        got = None if frames is None else tuple(frames.shape)
        raise RuntimeError(f"the {kind} warm-up produced frames of shape {got}, expected (T, *{expected})")
