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

from serve_app.backends.fastvideo.dit_compile import compile_transformer  # noqa: F401 - a worker op too


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


class Delivery(BaseModel):
    """What the worker hands back: the frames at this size, encoded into an MP4 while they decode (`encode`)."""

    width: int
    height: int
    encode: bool = False
    fps: int = 24
    crf: int = 18
    preset: str = "veryfast"


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


def video_to_i420(video: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """FastVideo's decoded (B, C, T, H, W) floats in [0, 1] -> (B, T, height*3/2, width) uint8 YUV 4:2:0, fitted
    to the delivered size, on the same device."""
    from serve_app.media.yuv import fit_video, rgb_to_i420

    return rgb_to_i420(fit_video(video.permute(0, 2, 1, 3, 4), width, height))


def stage_times(logging_info) -> dict[str, float]:
    stages = getattr(logging_info, "stages", None) or {}
    return {name: round(float(info.get("execution_time", 0.0)), 4) for name, info in stages.items()}


def forward(wrapper, forward_batch, fastvideo_args, delivery: Delivery) -> ForwardOutput:
    """Run one forward pass and return uint8 frames or a finished MP4, never the fp32 ForwardBatch.

    FastVideo's own Ray path ships the whole batch (the fp32 video alone is 1.3 GB at 1280x704x121) through
    Ray's object store. Here the video is fitted to the delivered size and converted to YUV 4:2:0 uint8 on the
    GPU and only that leaves; with `delivery.encode` it is encoded while it decodes: only the MP4 leaves.
    """
    from serve_app.backends.fastvideo.noise import start_prefetch
    from serve_app.backends.fastvideo.stages import find_stage
    from serve_app.backends.fastvideo.streaming import SPLIT_DECODE, VIDEO_SINK, StreamingEncoder

    latent_stage = find_stage(wrapper.worker.pipeline, "latent_preparation_stage")
    # the initial noise, drawn while the text encodes, with the args the worker's pipeline runs with
    start_prefetch(latent_stage, forward_batch, wrapper.worker.fastvideo_args)
    torch.cuda.reset_peak_memory_stats()
    sink = path = None
    shape = (forward_batch.num_frames, delivery.height, delivery.width)
    rank, world = getattr(wrapper.worker, "rank", 0), fastvideo_args.num_gpus
    if world > 1:  # a replica of several GPUs: all denoise, each decodes a band of columns (split_decode.py)
        forward_batch.extra[SPLIT_DECODE] = (rank, world)
    if rank != 0:  # the first delivers
        start = time.perf_counter()
        out = wrapper.worker.execute_forward(forward_batch, fastvideo_args)
        return ForwardOutput(shape=shape, stages=stage_times(out.logging_info), forward_s=time.perf_counter() - start,
                             peak_memory_mb=torch.cuda.max_memory_allocated() / 2**20)
    if delivery.encode:
        handle, name = tempfile.mkstemp(prefix="fastwan-", suffix=".mp4")
        os.close(handle)
        path = Path(name)
        sink = StreamingEncoder(path, delivery)
        forward_batch.extra[VIDEO_SINK] = sink
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
            result.frames = video_to_i420(out.output, delivery.width, delivery.height).cpu().numpy()[0]
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


def use_compile_cache(wrapper, directory: str) -> dict:
    """Keep torch.compile's caches (Inductor's graphs, Triton's kernels) in `directory`, read at each compile.

    Set in this worker's own environment: FastVideo copies only its own variables to its workers."""
    root = Path(directory)
    for name, sub in (("TORCHINDUCTOR_CACHE_DIR", "inductor"), ("TRITON_CACHE_DIR", "triton")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(root / sub)
    files = sum(1 for p in root.rglob("*") if p.is_file())
    return {"compile_cache": str(root), "compile_cache_files_at_start": files}


SDPA_KERNELS = ("cudnn", "flash", "efficient")


def choose_attention_kernel(wrapper, preference: str, tokens: int, repeats: int = 5) -> dict:
    """Order torch's fused SDPA kernels for this card: the fastest that runs at the DiT's self-attention shape
    first (auto), or the one asked for if it runs here. Lossless: every kernel computes the same attention in
    bf16 (the largest difference from the chosen one's output is reported). A kernel this torch lacks for this
    GPU (e.g. on an RTX 5090, sm_120) raises here and is skipped, so the order never names one that cannot run."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, _sdpa_kernel, sdpa_kernel

    backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}
    result: dict = {"attention_preference": preference, "attention_tokens": tokens}
    if preference == "torch-default":
        return {**result, "attention_kernel": "torch's default order"}
    heads, dim = _attention_shape(wrapper.worker.pipeline.get_module("transformer"))
    q, k, v = (torch.randn(1, heads, tokens, dim, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    timings, unavailable, outputs = {}, {}, {}
    for name, backend in backends.items():
        try:
            with sdpa_kernel(backend):
                outputs[name] = F.scaled_dot_product_attention(q, k, v)  # also: does it run here at all?
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(repeats):
                    F.scaled_dot_product_attention(q, k, v)
                end.record()
                torch.cuda.synchronize()
                timings[name] = start.elapsed_time(end) / repeats
        except RuntimeError as exc:
            unavailable[name] = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    result.update(attention_ms={n: round(t, 2) for n, t in timings.items()}, attention_unavailable=unavailable)
    if not timings:
        return {**result, "attention_kernel": "torch's default order (no fused kernel ran here)"}
    chosen = preference if preference in timings else min(timings, key=timings.get)
    if preference not in ("auto", chosen):
        result["attention_fallback"] = f"{preference} cannot run here ({unavailable.get(preference)}); using {chosen}"
    order = [backends[chosen]] + [b for n, b in backends.items() if n != chosen] + [SDPBackend.MATH]
    _sdpa_kernel(order, set_priority=True)  # global in this worker, read when the DiT is traced and compiled
    reference = outputs[chosen].float()
    result["attention_max_diff"] = {n: round(float((o.float() - reference).abs().max()), 5) for n, o in outputs.items()
                                    if n != chosen}
    del q, k, v, outputs, reference
    torch.cuda.empty_cache()
    return {**result, "attention_kernel": chosen}


def _attention_shape(transformer) -> tuple[int, int]:
    """(heads, head dim) of the DiT's self-attention (Wan: 24 x 128 at full size)."""
    config = getattr(transformer, "config", None)
    arch = getattr(config, "arch_config", config)
    heads = getattr(arch, "num_attention_heads", None) or getattr(config, "num_attention_heads", None)
    dim = getattr(arch, "attention_head_dim", None) or getattr(config, "attention_head_dim", None)
    if not heads or not dim:
        hidden = getattr(arch, "hidden_size", None) or 3072
        heads = heads or 24
        dim = dim or hidden // heads
    return int(heads), int(dim)


def limit_denoising_steps(wrapper, count: int | None) -> dict:
    """Run only the first `count` steps of the DMD schedule (None: all of them again). For the warm-up: every step
    calls the DiT with the same shapes, so one step compiles and loads all the graphs three would."""
    config = wrapper.worker.fastvideo_args.pipeline_config
    if not hasattr(config, "serve_full_dmd_steps"):
        config.serve_full_dmd_steps = list(config.dmd_denoising_steps)
    full = config.serve_full_dmd_steps
    config.dmd_denoising_steps = list(full) if count is None else list(full[:count])
    return {"dmd_denoising_steps": config.dmd_denoising_steps}


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
    """Let cuDNN time its conv algorithms per shape (the first call per shape is slower; off by default: on an
    H200 the VAE's convs gained nothing from it and each start paid about 4 s of timing)."""
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


def speed_up_vae(wrapper, fused: bool = True, compiled: bool = False, blocks: str = "high-resolution") -> dict:
    """The worker's Wan VAE with fused kernels and/or compiled decoder blocks, same output within bf16 (vae.py)."""
    from serve_app.backends.fastvideo.vae import compile_decoder_blocks, speed_up_wan_vae

    vae = wrapper.worker.pipeline.get_module("vae")
    options, applied = (fused, compiled, blocks), getattr(vae, "serve_speed_ups", None)
    if applied is not None:  # early_vae.py applied them while the replica started
        if applied[0] != options:
            raise RuntimeError(f"the VAE's speed-ups were applied as {applied[0]}, now asked as {options}")
        return applied[1]
    done = speed_up_wan_vae(vae) if fused else {}
    done = {**done, **compile_decoder_blocks(vae, blocks)} if compiled else done
    vae.serve_speed_ups = (options, done)
    return done


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
