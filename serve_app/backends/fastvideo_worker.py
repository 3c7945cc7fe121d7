"""What runs inside FastVideo's GPU worker process, and the executor fix that makes the Ray path usable.

Functions here are sent to the worker through the executor's `collective_rpc` (by reference, so the
worker imports this module) and receive FastVideo's worker wrapper as their first argument.
Imports fastvideo at module level: import this module only where FastVideo is installed.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from fastvideo.worker.ray_distributed_executor import RayDistributedExecutor


class ServeRayExecutor(RayDistributedExecutor):
    """FastVideo 0.2.1's Ray executor, buildable, and taking a worker started ahead (fastvideo_prestart).

    0.2.1 leaves `set_log_queue` / `clear_log_queue` abstract on the Ray executor, so constructing it
    raises TypeError. Worker logs already reach the Ray log stream, so forwarding them is a no-op here.
    """

    def __init__(self, fastvideo_args, *, log_queue=None, prestarted=None):
        self.prestarted = prestarted
        super().__init__(fastvideo_args, log_queue=log_queue)

    def _init_workers_ray(self, placement_group, **ray_remote_kwargs):
        import fastvideo.worker.ray_distributed_executor as executor_module

        from serve_app.backends.fastvideo_prestart import adopted

        with adopted(executor_module, self.prestarted):
            super()._init_workers_ray(placement_group, **ray_remote_kwargs)

    def set_log_queue(self, log_queue) -> None:
        return None

    def clear_log_queue(self) -> None:
        return None


def video_to_i420(video: torch.Tensor) -> torch.Tensor:
    """FastVideo's decoded (B, C, T, H, W) floats in [0, 1] -> (B, T, H*3/2, W) uint8 YUV 4:2:0, same device."""
    from serve_app.media.yuv import rgb_to_i420

    return rgb_to_i420(video.permute(0, 2, 1, 3, 4))


def stage_times(logging_info) -> dict[str, float]:
    stages = getattr(logging_info, "stages", None) or {}
    return {name: round(float(info.get("execution_time", 0.0)), 4) for name, info in stages.items()}


def forward_frames(wrapper, forward_batch, fastvideo_args, encode: dict | None = None) -> dict:
    """Run one forward pass and return uint8 frames or a finished MP4, never the fp32 ForwardBatch.

    The stock Ray path ships the whole batch (the fp32 video alone is 1.3 GB at 1280x704x121) through
    Ray's object store and copies it again on the caller: 3.9x slower than the mp executor. Here the
    video is converted to YUV 4:2:0 uint8 on the GPU, and only that (an eighth of the bytes) leaves;
    with `encode` ({fps, crf, preset}) it is encoded while it decodes (fastvideo_stream) and only the
    MP4 leaves.
    """
    torch.cuda.reset_peak_memory_stats()
    sink = path = None
    if encode:
        from serve_app.backends.fastvideo_stream import VIDEO_SINK, StreamingEncoder

        handle, name = tempfile.mkstemp(prefix="fastwan-", suffix=".mp4")
        os.close(handle)
        path = Path(name)
        sink = StreamingEncoder(path, **encode)
        forward_batch.extra[VIDEO_SINK] = sink
    start = time.perf_counter()
    try:
        out = wrapper.worker.execute_forward(forward_batch, fastvideo_args)
        forward_s = time.perf_counter() - start
        result = {"peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
                  "stages": stage_times(out.logging_info), "forward_s": forward_s}
        if sink is not None and sink.decoded_at is not None:
            result["stages"]["encode_tail"] = round(sink.finish(), 4)
            shape = (forward_batch.num_frames, forward_batch.height, forward_batch.width)
            result.update(mp4=path.read_bytes(), shape=shape, frames=None)
        else:
            if sink is not None:  # the stage did not stream (several videos in one batch): encode upstream
                sink.abort()
            result["frames"] = video_to_i420(out.output).cpu().numpy()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
    result["transfer_s"] = time.perf_counter() - start - forward_s
    trace = (out.extra or {}).get("serve_ti2v_trace")
    if isinstance(trace, dict):  # only when a test asked for it
        result["ti2v_trace"] = trace
    return result


def replace_stage(pipeline, name: str, new) -> None:
    """Put `new` where the pipeline's stage `name` is (FastVideo keeps stages in a list, a dict and an attribute)."""
    old = pipeline._stage_name_mapping[name]
    new._pipeline_stage_name = name
    pipeline._stages[next(i for i, stage in enumerate(pipeline._stages) if stage is old)] = new
    pipeline._stage_name_mapping[name] = new
    setattr(pipeline, name, new)


def describe_worker(wrapper) -> dict:
    """The self-check's executor probe: proves the GPU worker answers, and says what it runs on."""
    device = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(device)
    pipeline = getattr(wrapper.worker, "pipeline", None)
    return {
        "worker_pid": os.getpid(),
        "gpu": torch.cuda.get_device_name(device),
        "gpu_memory_gb": round(total / 1e9, 1),
        "gpu_free_gb": round(free / 1e9, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "pipeline": type(pipeline).__name__,
        "stages": list(getattr(pipeline, "_stage_name_mapping", {}).keys()),
        "attention_backend": os.environ.get("FASTVIDEO_ATTENTION_BACKEND", "auto"),
        "cpu_threads": torch.get_num_threads(),  # Ray sets OMP_NUM_THREADS=1 in actors that ask for no CPU
    }


def limit_memory(wrapper, gigabytes: float) -> dict:
    """Cap this worker's GPU memory (the CUDA caching allocator refuses more): simulate a smaller card."""
    device = torch.cuda.current_device()
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, gigabytes * 1e9 / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return {"limit_gb": gigabytes, "fraction": round(fraction, 4), "card_gb": round(total / 1e9, 1)}


def compile_transformer(wrapper, mode: str | None = None) -> dict:
    """torch.compile each DiT block (regional: one compiled block serves all 30, so it compiles in seconds)."""
    transformer = wrapper.worker.pipeline.get_module("transformer")
    blocks = getattr(transformer, "blocks", None)
    if blocks is None:
        raise RuntimeError(f"{type(transformer).__name__} has no .blocks to compile")
    for block in blocks:
        block.compile(mode=mode, dynamic=False)
    return {"compiled_blocks": len(blocks), "mode": mode or "default"}


def set_vae_precision(wrapper, precision: str) -> dict:
    """VAE weights and decode in `precision` ("bf16" or "fp32"), set where the worker reads it.

    The worker decodes with its own copy of the pipeline config (not the caller's), so the setting
    and the weights' dtype are both changed here, in the worker.
    """
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    config = wrapper.worker.fastvideo_args.pipeline_config
    config.vae_precision = precision
    config.vae_decode_precision = precision
    vae = wrapper.worker.pipeline.get_module("vae")
    vae.to(dtype)
    return {"vae_precision": precision, "vae_dtype": str(next(vae.parameters()).dtype)}


def set_cudnn_benchmark(wrapper, enabled: bool) -> dict:
    """Let cuDNN time its conv algorithms per shape (first call per shape is slower; the VAE's 3-D convs gain)."""
    torch.backends.cudnn.benchmark = enabled
    return {"cudnn_benchmark": enabled}


def set_vae_channels_last(wrapper) -> dict:
    """VAE conv weights in channels-last-3d (NDHWC), the layout cuDNN's tensor-core 3-D conv kernels use."""
    vae = wrapper.worker.pipeline.get_module("vae")
    converted = 0
    for module in vae.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.weight.data = module.weight.data.to(memory_format=torch.channels_last_3d)
            converted += 1
    return {"vae_channels_last_convs": converted}


def speed_up_vae(wrapper) -> dict:
    """Switch the worker's Wan VAE to fused kernels, same output (fastvideo_vae)."""
    from serve_app.backends.fastvideo_vae import speed_up_wan_vae

    return speed_up_wan_vae(wrapper.worker.pipeline.get_module("vae"))


def set_throwaway_mode(wrapper, on: bool, cudnn_benchmark: bool) -> dict:
    """For a throwaway shape (the self-check): compiled modules run eagerly and cuDNN searches no algorithms.

    Both would pay for a shape no request uses; `on=False` restores compiling and the `cudnn_benchmark` setting.
    """
    torch.compiler.set_stance("force_eager" if on else "default")
    torch.backends.cudnn.benchmark = False if on else cudnn_benchmark
    return {"throwaway": on, "cudnn_benchmark": torch.backends.cudnn.benchmark}
