"""What runs over gloo processes, as over the GPUs of one replica: FastVideo's code and the service's, on the CPU.

`tiny_dit` builds FastVideo's Wan DiT (tiny, random, fp32) inside FastVideo's own parallel groups;
`over_processes` runs a rank function with one process, then two (or as asked), and returns what the first saved.
"""

import os
from unittest import mock

import torch
import torch.multiprocessing as mp

from devtools.procs import free_port


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


def over_processes(rank_fn, tmp_path, worlds=(1, 2)):
    """What `rank_fn(rank, world, port, out)`'s first rank saved, with each number of processes (gloo)."""
    outputs = []
    for world in worlds:
        port = free_port()
        outputs.append(tmp_path / f"{rank_fn.__name__}{world}.pt")
        # no GPU from the start: set in the child after torch's import, dynamo still thought CUDA was there (run 39)
        with mock.patch.dict(os.environ, CUDA_VISIBLE_DEVICES=""):
            mp.spawn(rank_fn, args=(world, port, str(outputs[-1])), nprocs=world, join=True)
    return [torch.load(p) for p in outputs]
