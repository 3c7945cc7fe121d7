"""The `fast` speed profile, applied inside FastVideo's GPU worker (sent there by `collective_rpc`, like
worker_ops.py): FP8 DiT linears (fp8.py) and the user's light decoder (../light_decoder.py). Lossy by
design; the default profile, quality, never calls these.
"""

from __future__ import annotations

from pathlib import Path


def apply_speed_profile(run_in_worker, profile: str, light_decoder_path: Path | None) -> dict:
    """In the replica: the fast profile's parts, sent to the worker before the DiT is compiled; what was done."""
    done = {"speed_profile": profile}
    if profile != "fast":
        return done
    done.update(run_in_worker(use_fp8_linears))
    if light_decoder_path is None:
        return {**done, "light_decoder": "none given: the Wan VAE decodes"}
    return {**done, **run_in_worker(use_light_decoder, path=str(light_decoder_path))}


def use_fp8_linears(wrapper) -> dict:
    """The fast profile's DiT: every block's linears in FP8 (fp8.py), if this card and torch run FP8 matmuls."""
    import torch

    from serve_app.backends.fastvideo.fp8 import convert_linears, fp8_unavailable

    reason = fp8_unavailable("cuda")
    if reason is not None:
        return {"dit_fp8": f"off: FP8 matmuls cannot run here ({reason})"}
    before = torch.cuda.memory_allocated()
    counts = convert_linears(wrapper.worker.pipeline.get_module("transformer").blocks)
    torch.cuda.empty_cache()
    return {"dit_fp8": "on", **counts, "dit_fp8_saved_gb": round((before - torch.cuda.memory_allocated()) / 1e9, 2)}


def use_light_decoder(wrapper, path: str) -> dict:
    """The fast profile's decoder (light_decoder.py) in place of the Wan VAE's decode; the VAE stays for
    image-to-video's first-frame encoding."""
    import torch

    from serve_app.backends.fastvideo.stages import get_stage
    from serve_app.backends.light_decoder import load_light_decoder

    decoder = load_light_decoder(Path(path), device="cuda", dtype=torch.bfloat16)
    get_stage(wrapper.worker.pipeline, "decoding_stage").light_decoder = decoder
    millions = sum(p.numel() for p in decoder.parameters()) / 1e6
    return {"light_decoder": path, "light_decoder_params_m": round(millions, 1)}
