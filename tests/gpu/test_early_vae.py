"""The VAE the prestarted worker loads and warms up while the replica imports FastVideo (early_vae.py).

The worker is prestarted only inside a placement group, as in a Serve replica: each start here runs the
backend in an actor placed the way Serve places the generator, once with the early VAE and once without.
"""

import os
import tempfile

import numpy as np
import pytest
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from serve_app.contracts import GenerationParams

PARAMS = GenerationParams(prompt="a red car on a street", width=256, height=128, num_frames=17, fps=16,
                          num_inference_steps=3, guidance_scale=1.0, seed=5)


def vae_against_its_files(wrapper) -> dict:
    """In the worker: the pipeline's VAE against the weights in its folder, and what was applied to it."""
    import glob

    import torch
    from safetensors.torch import load_file

    vae = wrapper.worker.pipeline.get_module("vae")
    folder = wrapper.worker.fastvideo_args.model_paths["vae"]
    files = {k: v for f in glob.glob(os.path.join(folder, "*.safetensors")) for k, v in load_file(f).items()}
    own = vae.state_dict()
    shared = [k for k in files if k in own]
    different = [k for k in shared if not torch.equal(own[k].cpu(), files[k].to(own[k].dtype))]
    return {"folder": folder, "checked": len(shared), "of": len(own), "different": different[:5],
            "dtype": str(next(vae.parameters()).dtype), "speed_ups": getattr(vae, "serve_speed_ups", (None,))[0]}


@ray.remote(num_cpus=0)
class Replica:
    """Plays the generator replica: the backend loads here, inside the placement group."""

    def __init__(self, tiny_root: str, early: bool):
        os.environ.setdefault("FASTVIDEO_ATTENTION_BACKEND", "TORCH_SDPA")
        from serve_app.backends import create_backend
        from serve_app.settings import Settings

        settings = Settings(backend="fastvideo", model="tiny", tiny_model_dir=tiny_root, device="cuda",
                            encode_in_worker=False, early_vae=early).resolve(gpus=1)
        self.backend = create_backend(settings)
        self.backend.load()

    def run(self) -> dict:
        b = self.backend
        return {"options": b.options, "vae": b.run_in_worker(vae_against_its_files),
                "frames": b.forward(b.forward_batch(PARAMS)).frames}

    def close(self) -> None:
        self.backend.close()


def start(tiny_root, early: bool) -> dict:
    group = placement_group([{"CPU": 1}, {"GPU": 1}])
    ray.get(group.ready(), timeout=120)
    replica = Replica.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
        placement_group=group, placement_group_capture_child_tasks=True, placement_group_bundle_index=0)).remote(
        str(tiny_root), early)
    try:
        return ray.get(replica.run.remote(), timeout=600)
    finally:
        ray.get(replica.close.remote(), timeout=120)
        ray.kill(replica)
        remove_placement_group(group)


@pytest.fixture(scope="module")
def runs(tiny_model_root):
    ray.init(include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="fwe-", dir="/tmp"))
    try:
        yield {"early": start(tiny_model_root, True), "late": start(tiny_model_root, False)}
    finally:
        ray.shutdown()


def test_fastvideo_gets_the_early_vae_with_the_models_weights_set_up_once(runs):
    options, vae = runs["early"]["options"], runs["early"]["vae"]
    assert options["prestarted_worker"] == "adopted" and options["early_vae"].startswith("used: loaded in"), options
    assert vae["folder"].endswith("/vae") and vae["checked"] > 0.9 * vae["of"] and not vae["different"], vae
    assert vae["dtype"] == "torch.bfloat16" and tuple(vae["speed_ups"]) == (True, True, "high-resolution"), vae
    assert options["vae_compiled_blocks"] > 0 and options["fused_norms"] > 0  # reported as when applied late


def test_the_early_vae_makes_the_same_video(runs):
    """Same weights, same settings: the frames agree within rounding. Not bit for bit: the fused norm kernel
    (compiled with dynamic shapes) is traced first at the warm-up's image encode here and at this request's
    decode there, and its two builds round a few bf16 values differently (first run: at most 4 levels of
    255); a VAE with other weights or settings would be tens of levels off on average."""
    assert runs["late"]["options"]["early_vae"] == "off" and runs["late"]["vae"]["checked"] > 0
    early, late = runs["early"]["frames"].astype(int), runs["late"]["frames"].astype(int)
    diff = np.abs(early - late)
    assert early.shape == late.shape and diff.mean() < 1.0 and diff.max() <= 8, (diff.mean(), diff.max())
