"""A generator replica of two GPUs (`gpus_per_replica: 2`): the DiT split by sequence across them.

Each start runs the backend in an actor placed the way Serve places the generator (app.generator_options):
one replica with one GPU, one with two. Needs two GPUs (the nvidia-h200-x2 machine); skips elsewhere. The same
splits over two CPU processes (gloo), in CI: tests/fastvideo/test_split_over_processes.py.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from serve_app.contracts import GenerationParams

PARAMS = GenerationParams(prompt="a red car on a street", width=256, height=128, num_frames=17, fps=16,
                          num_inference_steps=3, guidance_scale=1.0, seed=5)


def worker_rank(wrapper) -> dict:
    import torch

    return {"rank": wrapper.worker.rank, "device": torch.cuda.current_device(), "pid": os.getpid()}


@ray.remote(num_cpus=0)
class Replica:
    def __init__(self, tiny_root: str, gpus: int):
        os.environ.setdefault("FASTVIDEO_ATTENTION_BACKEND", "TORCH_SDPA")
        from serve_app.backends import create_backend
        from serve_app.settings import Settings

        settings = Settings(backend="fastvideo", model="tiny", tiny_model_dir=tiny_root, device="cuda",
                            encode_in_worker=False, gpus_per_replica=gpus).resolve(gpus=gpus)
        self.backend = create_backend(settings)
        self.backend.load()

    def run(self) -> dict:
        from serve_app.media.images import solid_png

        b = self.backend
        image = PARAMS.model_copy(update={"image_png": solid_png(PARAMS.width, PARAMS.height, (200, 40, 40))})
        frames = {kind: b.forward(b.forward_batch(params)).frames for kind, params in (("t2v", PARAMS), ("i2v", image))}
        workers = b.generator.executor.collective_rpc(worker_rank)
        return {"options": b.options, "frames": frames, "workers": workers}

    def close(self) -> None:
        self.backend.close()


def start(tiny_root, gpus: int) -> dict:
    group = placement_group([{"CPU": 1}] + [{"GPU": 1}] * gpus, strategy="STRICT_PACK")
    ray.get(group.ready(), timeout=120)
    replica = Replica.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
        placement_group=group, placement_group_capture_child_tasks=True, placement_group_bundle_index=0)).remote(
        str(tiny_root), gpus)
    try:
        return ray.get(replica.run.remote(), timeout=900)
    finally:
        ray.get(replica.close.remote(), timeout=120)
        ray.kill(replica)
        remove_placement_group(group)


@pytest.fixture(scope="module")
def runs(tiny_model_root):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    ray.init(include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="fwsp-", dir="/tmp"))
    try:
        yield {"one": start(tiny_model_root, 1), "two": start(tiny_model_root, 2)}
    finally:
        ray.shutdown()


def test_a_two_gpu_replica_runs_one_worker_per_gpu(runs):
    workers = runs["two"]["workers"]
    assert runs["two"]["options"]["gpus_per_replica"] == 2 and runs["one"]["options"]["gpus_per_replica"] == 1
    assert [w["rank"] for w in workers] == [0, 1] and len({w["pid"] for w in workers}) == 2, workers
    assert runs["two"]["options"]["prestarted_worker"] == "adopted"  # rank 0 is the worker started ahead
    # the DiT compiled with its attention and the Ulysses all-to-all (NCCL) inside the graph (dit_compile.py)
    compiled = runs["two"]["options"]["dit_attention_compiled"]
    assert compiled.endswith("all-to-all over 2 GPUs too"), compiled


@pytest.mark.parametrize("kind", ["t2v", "i2v"])
def test_two_gpus_make_the_same_video_as_one(runs, kind):
    """The sequence split computes the same attention; the matmuls over half the rows may round a few bf16
    values differently, so the frames agree within rounding (the figure goes to $OUT for docs/benchmarks.md).
    Image-to-video gives the DiT per-token timesteps, which each GPU must take for its own tokens (ti2v.py)."""
    one, two = runs["one"]["frames"][kind].astype(int), runs["two"]["frames"][kind].astype(int)
    assert one.shape == two.shape
    diff = np.abs(one - two)
    if os.environ.get("OUT"):  # scripts/gpu_check.sh: the figure comes back for docs/benchmarks.md
        figure = {"mean_diff": round(float(diff.mean()), 4), "max_diff": int(diff.max())}
        (Path(os.environ["OUT"]) / f"sequence_parallel_{kind}.json").write_text(json.dumps(figure))
    assert diff.mean() < 1.0 and diff.max() <= 16, (diff.mean(), diff.max())
