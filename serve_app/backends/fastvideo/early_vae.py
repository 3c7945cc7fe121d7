"""The Wan VAE loaded and warmed up in the GPU worker while the replica is still importing FastVideo.

The prestarted worker (prestart.py) has imported FastVideo several seconds before the replica, which
imports it too, asks it to load the model; after the load come the VAE's own load (about 5 s: FastVideo
builds it on the CPU, then loads and moves it) and its part of the warm-up (about 6 s: tracing the compiled
decoder blocks, the fused norm kernel, each conv's first use). Here the worker spends that wait on both: it
loads the VAE with FastVideo's own loader from the arguments the replica will send, applies the service's
VAE settings (worker_ops sees them applied and does not apply them twice), decodes the warm-up's latent
frames at the default size and encodes one image of it. When FastVideo's load reaches the VAE it gets this
one, with the loader's side effects on its arguments. If anything fails here it is logged and FastVideo
loads the VAE itself: the start is then as slow as before, never wrong.
Runs in the worker only (prestart.py calls `start`); FastVideo is imported lazily.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from types import SimpleNamespace

from pydantic import BaseModel

logger = logging.getLogger(__name__)

WAIT_S = 600.0  # how long FastVideo's loader waits for it (with a cache: 8-21 s; without one: 25-45 s on an H200)
WARMUP_LATENT_FRAMES = 3  # as the warm-up's decode (streaming.py: from the third chunk on every shape is seen)


class EarlyVaeSpec(BaseModel):
    """What the replica will ask for: FastVideo's arguments, the VAE settings and the warm-up's size."""

    model_path: str
    generator_kwargs: dict
    vae_precision: str
    channels_last: bool
    fused: bool
    compiled: bool
    blocks: str
    compile_cache_dir: str
    warm_compile_pool: bool = False
    width: int
    height: int
    warm_up: bool = True


class _Early:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.vae = None
        self.vae_path: str | None = None
        self.report: dict = {"early_vae": "off"}

    def take(self, vae_path: str):
        """The early VAE for this path (waits for it), once; None if it failed or is another model's."""
        if not self.done.is_set() and self.report["early_vae"] == "off":
            return None
        if not self.done.wait(WAIT_S):  # never hang the start on it: load as usual (it keeps its memory)
            self.report["early_vae"] = f"not used: not ready after {WAIT_S:g} s"
            return None
        vae, self.vae = self.vae, None
        if vae is None or os.path.realpath(vae_path) != os.path.realpath(self.vae_path or ""):
            if vae is not None:
                self.report["early_vae"] = f"not used: FastVideo asked for {vae_path}, not {self.vae_path}"
            return None
        self.report["early_vae"] = self.report["early_vae"].replace("ready", "used", 1)
        return vae


EARLY = _Early()  # one per worker process


def start(spec: dict) -> None:
    """Hand FastVideo's VAE loader the early VAE, and load and warm it up in a thread (prestart.py calls this)."""
    parsed = EarlyVaeSpec.model_validate(spec)
    _patch_vae_loader()
    EARLY.report["early_vae"] = "loading"
    threading.Thread(target=_run, args=(parsed,), name="early-vae", daemon=True).start()


def report(wrapper=None) -> dict:
    """What the early VAE did (a worker op: the backend reports it with the model's options)."""
    return dict(EARLY.report)


def _run(spec: EarlyVaeSpec) -> None:
    import torch

    from serve_app.backends.fastvideo import worker_ops

    start_s = time.perf_counter()
    try:
        worker_ops.use_compile_cache(None, spec.compile_cache_dir)
        if spec.warm_compile_pool and spec.compiled:
            from serve_app.backends.fastvideo.prestart import start_compile_workers

            start_compile_workers()
        args, vae_path = _fastvideo_args(spec)
        if args.vae_cpu_offload:
            EARLY.report["early_vae"] = "not used: the VAE is offloaded to the CPU"
            return
        from fastvideo.models.loader.component_loader import VAELoader

        vae = _ORIGINAL_LOAD(VAELoader(), vae_path, args)
        loaded_s = time.perf_counter() - start_s
        holder = SimpleNamespace(worker=SimpleNamespace(pipeline=SimpleNamespace(get_module=lambda name: vae),
                                                        fastvideo_args=args))
        worker_ops.set_vae_precision(holder, spec.vae_precision)
        if spec.channels_last:
            worker_ops.set_vae_channels_last(holder)
        worker_ops.speed_up_vae(holder, fused=spec.fused, compiled=spec.compiled, blocks=spec.blocks)
        if spec.warm_up:
            _warm_up(vae, args, spec)
        torch.cuda.empty_cache()
        EARLY.vae, EARLY.vae_path = vae, vae_path
        EARLY.report["early_vae"] = (f"ready: loaded in {loaded_s:.1f} s, set up and warmed up in "
                                     f"{time.perf_counter() - start_s - loaded_s:.1f} s while the replica started")
    except Exception as exc:  # noqa: BLE001 - FastVideo then loads the VAE itself, as without this
        logger.exception("the early VAE failed; FastVideo loads it as usual")
        EARLY.vae = None
        EARLY.report["early_vae"] = f"failed, loaded as usual: {type(exc).__name__}: {str(exc)[:200]}"
        torch.cuda.empty_cache()
    finally:
        EARLY.done.set()


def _fastvideo_args(spec: EarlyVaeSpec):
    """FastVideoArgs as VideoGenerator.from_pretrained builds them from the same keyword arguments, with the
    device policy the worker's init_device applies; and the VAE's folder as the pipeline's loader names it."""
    from fastvideo.api.compat import (generator_config_to_fastvideo_args, legacy_from_pretrained_to_config,
                                      normalize_generator_config)

    config = legacy_from_pretrained_to_config(spec.model_path, dict(spec.generator_kwargs))
    args = generator_config_to_fastvideo_args(normalize_generator_config(config))
    args.finalize_device_offload_policy(0)
    return args, os.path.join(args.model_path, "vae")


def _warm_up(vae, args, spec: EarlyVaeSpec) -> None:
    """Encode one image and decode the warm-up's latent frames, at the default size, as the service does."""
    import torch

    from serve_app.backends.fastvideo.streaming import StreamingDecodingStage

    param = next(vae.parameters())
    with torch.no_grad():
        image = torch.zeros(1, 3, 1, spec.height, spec.width, device=param.device, dtype=param.dtype)
        latent = vae.encode(image).mean  # (1, C, 1, h, w): the latent shape of this size, whatever the VAE
        latents = torch.randn(latent.shape[:2] + (WARMUP_LATENT_FRAMES,) + latent.shape[3:], device=param.device)
        for _ in StreamingDecodingStage(vae).decode_chunks(latents, args):
            pass
    if param.is_cuda:
        torch.cuda.synchronize()


_ORIGINAL_LOAD = None


def _patch_vae_loader() -> None:
    """FastVideo's VAE loader, in this process: the early VAE when it is this path's, else the loader's own."""
    global _ORIGINAL_LOAD
    from fastvideo.models.loader import component_loader
    from fastvideo.models.hf_transformer_utils import get_diffusers_config

    if _ORIGINAL_LOAD is not None:
        return
    _ORIGINAL_LOAD = original = component_loader.VAELoader.load

    def load(self, model_path, fastvideo_args):
        vae = EARLY.take(model_path)
        if vae is None:
            return original(self, model_path, fastvideo_args)
        fastvideo_args.model_paths["vae"] = model_path  # what the loader does to its arguments besides loading
        config = get_diffusers_config(model=model_path)
        config.pop("_class_name", None)
        config.pop("_name_or_path", None)
        fastvideo_args.pipeline_config.vae_config.update_model_arch(config)
        return vae

    component_loader.VAELoader.load = load
