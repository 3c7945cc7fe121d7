"""What runs inside FastVideo's GPU worker process, sent there by the executor's `collective_rpc`.

Each function receives FastVideo's worker wrapper first and returns a typed result. They are sent by
reference, so the worker imports this module; it imports torch at module level and FastVideo lazily.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field


class WorkerInfo(BaseModel):
    """The self-check's executor probe: the worker answers, and says what it runs on."""

    worker_pid: int
    gpu: str
    gpu_memory_gb: float
    gpu_free_gb: float
    torch: str
    cuda: str | None
    pipeline: str
    stages: list[str]
    attention_backend: str
    cpu_threads: int  # Ray sets OMP_NUM_THREADS=1 in actors that ask for no CPU


class EncodeOptions(BaseModel):
    fps: int
    crf: int
    preset: str


class ForwardOutput(BaseModel):
    """One forward pass: a finished MP4 (encoded in the worker while it decoded) or uint8 YUV 4:2:0 frames."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    mp4: bytes | None = Field(None, repr=False)
    frames: np.ndarray | None = Field(None, repr=False, description="(T, H * 3 // 2, W) I420 planes")
    shape: tuple[int, int, int] = Field(description="(frames, height, width)")
    peak_memory_mb: float | None = None
    stages: dict[str, float] = Field(default_factory=dict)
    forward_s: float = 0.0
    transfer_s: float = 0.0
    encode_tail_s: float = 0.0


def video_to_i420(video: torch.Tensor) -> torch.Tensor:
    """FastVideo's decoded (B, C, T, H, W) floats in [0, 1] -> (B, T, H*3/2, W) uint8 YUV 4:2:0, same device."""
    from serve_app.media.yuv import rgb_to_i420

    return rgb_to_i420(video.permute(0, 2, 1, 3, 4))


def stage_times(logging_info) -> dict[str, float]:
    stages = getattr(logging_info, "stages", None) or {}
    return {name: round(float(info.get("execution_time", 0.0)), 4) for name, info in stages.items()}


def forward(wrapper, forward_batch, fastvideo_args, encode: EncodeOptions | None = None) -> ForwardOutput:
    """Run one forward pass and return uint8 frames or a finished MP4, never the fp32 ForwardBatch.

    FastVideo's own Ray path ships the whole batch (the fp32 video alone is 1.3 GB at 1280x704x121)
    through Ray's object store. Here the video is converted to YUV 4:2:0 uint8 on the GPU and only that
    leaves; with `encode` it is encoded while it decodes (streaming.py) and only the MP4 leaves.
    """
    from serve_app.backends.fastvideo.streaming import VIDEO_SINK, StreamingEncoder

    torch.cuda.reset_peak_memory_stats()
    sink = path = None
    if encode is not None:
        handle, name = tempfile.mkstemp(prefix="fastwan-", suffix=".mp4")
        os.close(handle)
        path = Path(name)
        sink = StreamingEncoder(path, encode.fps, encode.crf, encode.preset)
        forward_batch.extra[VIDEO_SINK] = sink
    shape = (forward_batch.num_frames, forward_batch.height, forward_batch.width)
    start = time.perf_counter()
    try:
        out = wrapper.worker.execute_forward(forward_batch, fastvideo_args)
        forward_s = time.perf_counter() - start
        result = ForwardOutput(shape=shape, peak_memory_mb=torch.cuda.max_memory_allocated() / 2**20,
                               stages=stage_times(out.logging_info), forward_s=forward_s)
        if sink is not None and sink.decoded_at is not None:
            result.encode_tail_s = sink.finish()
            result.mp4 = path.read_bytes()
        else:
            if sink is not None:  # the stage did not stream (several videos in one batch): encode upstream
                sink.abort()
            result.frames = video_to_i420(out.output).cpu().numpy()[0]
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
    result.transfer_s = time.perf_counter() - start - result.forward_s
    return result


def describe_worker(wrapper) -> WorkerInfo:
    device = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(device)
    pipeline = getattr(wrapper.worker, "pipeline", None)
    from serve_app.backends.fastvideo.stages import stage_names

    return WorkerInfo(
        worker_pid=os.getpid(), gpu=torch.cuda.get_device_name(device), gpu_memory_gb=round(total / 1e9, 1),
        gpu_free_gb=round(free / 1e9, 1), torch=torch.__version__, cuda=torch.version.cuda,
        pipeline=type(pipeline).__name__, stages=stage_names(pipeline),
        attention_backend=os.environ.get("FASTVIDEO_ATTENTION_BACKEND", "auto"), cpu_threads=torch.get_num_threads(),
    )


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
    """VAE weights and decode in `precision` ("bf16" or "fp32"), set in the worker's own pipeline config."""
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
    """Switch the worker's Wan VAE to fused kernels, same output (vae.py)."""
    from serve_app.backends.fastvideo.vae import speed_up_wan_vae

    return speed_up_wan_vae(wrapper.worker.pipeline.get_module("vae"))


def install_stages(wrapper) -> dict:
    """Image-to-video denoising and the streaming decode in the worker's pipeline (stages.py)."""
    from serve_app.backends.fastvideo.stages import install_serving_stages

    return install_serving_stages(wrapper.worker.pipeline)


def set_throwaway_mode(wrapper, on: bool, cudnn_benchmark: bool) -> dict:
    """For a throwaway shape (the self-check): compiled modules run eagerly and cuDNN searches no algorithms.

    Both would pay for a shape no request uses; `on=False` restores compiling and the `cudnn_benchmark` setting.
    """
    torch.compiler.set_stance("force_eager" if on else "default")
    torch.backends.cudnn.benchmark = False if on else cudnn_benchmark
    return {"throwaway": on, "cudnn_benchmark": torch.backends.cudnn.benchmark}
