"""A generator replica of two GPUs (`gpus_per_replica: 2`): the DiT split by sequence across them.

Each start runs the backend in an actor placed the way Serve places the generator (app.generator_options):
one replica with one GPU, one with two. Needs two GPUs (the nvidia-h200-x2 machine); skips elsewhere. The
first test needs FastVideo only: FastVideo's DiT over two CPU processes (gloo), as image-to-video calls it.
"""

import json
import os
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import ray
import torch
import torch.multiprocessing as mp
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from serve_app.contracts import GenerationParams

PARAMS = GenerationParams(prompt="a red car on a street", width=256, height=128, num_frames=17, fps=16,
                          num_inference_steps=3, guidance_scale=1.0, seed=5)


def tiny_dit(rank: int, world: int, port: int):
    """FastVideo's Wan DiT (tiny, random, fp32) on `world` gloo processes, and its inputs: per-token timesteps
    as ti2v.py calls it (this rank's share of them). Call in a process of its own (it sets up FastVideo's groups)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # gloo on the CPU, also on a GPU machine
    os.environ["FASTVIDEO_ATTENTION_BACKEND"] = "TORCH_SDPA"
    import fastvideo.platforms as platforms
    from fastvideo.platforms.cpu import CpuPlatform

    # FastVideo picks its platform by asking NVML, which sees the GPUs whatever CUDA_VISIBLE_DEVICES says
    platforms._current_platform = CpuPlatform()
    from fastvideo.distributed.parallel_state import init_distributed_environment, initialize_model_parallel
    from fastvideo.platforms import current_platform

    init_distributed_environment(world_size=world, rank=rank, local_rank=rank,
                                 distributed_init_method=f"tcp://127.0.0.1:{port}", backend="gloo")
    initialize_model_parallel(tensor_model_parallel_size=1, sequence_model_parallel_size=world, backend="gloo")
    type(current_platform).get_attn_backend_cls = classmethod(  # the CPU platform names none: torch's SDPA
        lambda cls, *a, **k: "fastvideo.attention.backends.sdpa.SDPABackend")
    from fastvideo.configs.models.dits import WanVideoConfig
    from fastvideo.models.dits.wanvideo import WanTransformer3DModel

    from serve_app.backends.fastvideo.ti2v import _this_ranks_tokens

    config = WanVideoConfig()
    arch = config.arch_config
    arch.num_attention_heads, arch.attention_head_dim, arch.in_channels, arch.out_channels = 2, 32, 48, 48
    arch.text_dim, arch.ffn_dim, arch.num_layers, arch.text_len = 32, 64, 2, 16
    arch.__post_init__()
    torch.manual_seed(0)
    model = WanTransformer3DModel(config=config, hf_config={}).float().eval()
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.05)
    draw = torch.Generator().manual_seed(1)
    latents, text = torch.randn(1, 48, 5, 8, 16, generator=draw), torch.randn(1, 16, 32, generator=draw)
    t_frames = torch.full((1, 5), 757, dtype=torch.long)
    t_frames[:, 0] = 0  # the first frame is the image: timestep 0
    t_tokens = _this_ranks_tokens(t_frames.repeat_interleave(4 * 8, dim=1))  # 4 x 8 tokens a frame
    return model, (latents, text, t_tokens)


def tiny_dit_rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank: the tiny DiT's output, saved by the first."""
    from fastvideo.forward_context import set_forward_context

    model, inputs = tiny_dit(rank, world, port)
    with torch.no_grad(), set_forward_context(current_timestep=0, attn_metadata=None):
        video = model(*inputs)
    if rank == 0:
        torch.save(video, out)


def one_and_two_processes(rank_fn, tmp_path):
    """What `rank_fn(rank, world, port, out)`'s first rank saved, with one process and with two (gloo)."""
    pytest.importorskip("fastvideo")
    import socket

    outputs = []
    for world in (1, 2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        outputs.append(tmp_path / f"{rank_fn.__name__}{world}.pt")
        # no GPU from the start: set in the child after torch's import, dynamo still thought CUDA was there (run 39)
        with mock.patch.dict(os.environ, CUDA_VISIBLE_DEVICES=""):
            mp.spawn(rank_fn, args=(world, port, str(outputs[-1])), nprocs=world, join=True)
    return [torch.load(p) for p in outputs]


def test_the_dit_split_over_two_processes_gives_one_processs_output(tmp_path):
    """Per-token timesteps (image-to-video) sharded like the tokens: the same numbers as one process (fp32)."""
    one, two = one_and_two_processes(tiny_dit_rank, tmp_path)
    assert one.shape == two.shape == (1, 48, 5, 8, 16)
    assert torch.allclose(one, two, atol=1e-5), (one - two).abs().max()


def split_decode_rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank: the service's streaming decoding stage on a tiny random Wan 2.2 VAE, its band of one video."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # as tiny_dit_rank
    from types import SimpleNamespace

    import fastvideo.pipelines.stages.decoding as decoding
    import torch.distributed as dist
    from fastvideo.configs.models.vaes import WanVAEConfig
    from fastvideo.configs.models.vaes.wanvae import WanVAEArchConfig
    from fastvideo.models.vaes.wanvae import AutoencoderKLWan

    from serve_app.backends.fastvideo.streaming import SPLIT_DECODE, StreamingDecodingStage
    from serve_app.backends.fastvideo.vae import speed_up_wan_vae

    decoding.get_local_torch_device = lambda: torch.device("cpu")  # gloo on the CPU, wherever this runs
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    arch = WanVAEArchConfig(base_dim=16, decoder_base_dim=16, z_dim=48, dim_mult=(1, 2, 4, 4), num_res_blocks=1,
                            temperal_downsample=(False, True, True), in_channels=12, out_channels=12, patch_size=2,
                            scale_factor_spatial=16, scale_factor_temporal=4, is_residual=True,
                            latents_mean=(0.0,) * 48, latents_std=(1.0,) * 48)
    torch.manual_seed(0)
    vae = AutoencoderKLWan(WanVAEConfig(arch_config=arch)).eval()
    for param in vae.parameters():
        torch.nn.init.normal_(param, std=0.05)
    speed_up_wan_vae(vae, compiled=False)  # as the service runs it (upsampling folded, shortcut views)
    config = SimpleNamespace(vae_decode_precision="fp32", vae_precision="fp32", vae_tiling=False)
    args = SimpleNamespace(pipeline_config=config, disable_autocast=False, vae_cpu_offload=False,
                           model_loaded={"vae": True}, output_type="pil")
    outputs = {}
    for name, videos in (("one", 1), ("two", 2)):  # two videos: the first GPU decodes them alone, no collective
        latents = torch.randn(videos, 48, 3, 6, 30, generator=torch.Generator().manual_seed(1))
        batch = SimpleNamespace(latents=latents, extra={SPLIT_DECODE: (rank, world)} if world > 1 else {},
                                return_trajectory_decoded=False)
        outputs[name] = StreamingDecodingStage(vae).forward(batch, args).output
    if rank == 0:
        torch.save(outputs, out)
    else:
        assert all(o.shape[2] == 0 for o in outputs.values())  # it delivered nothing
    dist.destroy_process_group()


def test_the_decode_split_over_two_processes_gives_one_processs_frames(tmp_path):
    """Each process decodes a band of columns with its halo (split_decode.py); gathered, the video is the one a
    single process decodes (fp32: equal to rounding); a batch of two videos is decoded by the first alone."""
    one, two = one_and_two_processes(split_decode_rank, tmp_path)
    for name in ("one", "two"):
        assert one[name].shape == two[name].shape and one[name].shape[-1] == 30 * 16, name
        assert torch.allclose(one[name], two[name], atol=1e-5), (name, (one[name] - two[name]).abs().max())


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
