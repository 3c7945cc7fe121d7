"""FastVideo backend: FastWan2.2's 3-step DMD pipeline through FastVideo's VideoGenerator (CUDA only).

The executor is a setting. `ray` (default) runs the GPU worker as a Ray actor inside the generator
replica's placement group, so nothing needs a shared-memory IPC namespace (no `--ipc=host`, 64 MB
/dev/shm is enough). `mp` is FastVideo's default multiprocessing executor, for comparison.
A batch runs its requests one after another: FastVideo takes one prompt per forward pass and its DMD
pipeline shares random state across a batch, so each request keeps its own seed only when run alone.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
from pathlib import Path

from serve_app.backends.base import (
    Backend,
    BackendInfo,
    GeneratedVideo,
    GenerationParams,
    ProgressCallback,
)
from serve_app.backends.torch_utils import resolve_model_path
from serve_app.models.layout import MODEL_FOLDER_NAME
from serve_app.settings import Settings

logger = logging.getLogger(__name__)

# Folder names FastVideo maps to the FastWan2.2 TI2V pipeline config (it matches the last path component).
FASTVIDEO_NAMES = {n.lower() for n in (MODEL_FOLDER_NAME, "FastWan2.2-TI2V-5B-FullAttn-Diffusers")}
EXPECTED_CONFIG = "FastWan2_2_TI2V_5B_Config"


def fastvideo_model_path(path: Path, link_root: Path) -> Path:
    """A path FastVideo resolves to the FastWan2.2 config: `path` itself, or a link named as FastVideo expects.

    An HF cache snapshot (`.../snapshots/<hash>`) or any other folder name would silently select
    another pipeline config in FastVideo 0.2.1.
    """
    path = Path(path)
    if path.name.lower() in FASTVIDEO_NAMES:
        return path
    link = Path(link_root) / MODEL_FOLDER_NAME
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == path.resolve():
            return link
        link.unlink()
    link.symlink_to(path.resolve(), target_is_directory=True)
    return link


class FastVideoBackend(Backend):
    name = "fastvideo"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.generator = None
        self.model_path: Path | None = None
        self.worker: dict = {}
        self.prestarted = None
        self._busy = threading.Lock()
        self._broken: str | None = None

    # --- start-up ------------------------------------------------------------------------------
    def load(self) -> None:
        s = self.settings
        if s.fastvideo_executor == "ray":  # first: its import of FastVideo overlaps the one below
            from serve_app.backends.fastvideo_prestart import prestart_worker

            self.prestarted = prestart_worker(warm_compile_pool=s.torch_compile)
        if s.attention_backend != "auto":
            os.environ["FASTVIDEO_ATTENTION_BACKEND"] = s.attention_backend
        os.environ.setdefault("FASTVIDEO_STAGE_LOGGING", "1")  # per-stage times for metrics; cheap
        from fastvideo.api.sampling_param import SamplingParam

        self.model_path = fastvideo_model_path(resolve_model_path(s), s.model_links_dir)
        self.profile = memory_profile(s)
        te_offload = s.text_encoder_cpu_offload if s.text_encoder_cpu_offload is not None \
            else self.profile == "fit-32gb"
        generator_cls = serve_video_generator_class(self.prestarted)
        self.generator = generator_cls.from_pretrained(
            str(self.model_path),
            num_gpus=1,
            distributed_executor_backend=s.fastvideo_executor,
            dit_cpu_offload=s.dit_cpu_offload,
            dit_layerwise_offload=s.dit_layerwise_offload,
            text_encoder_cpu_offload=te_offload,
            image_encoder_cpu_offload=True,
            vae_cpu_offload=s.vae_cpu_offload,
            pin_cpu_memory=s.pin_cpu_memory,
            text_encoder_precisions=(s.text_encoder_precision,),
        )
        config = type(self.generator.fastvideo_args.pipeline_config).__name__
        if config != EXPECTED_CONFIG:
            raise RuntimeError(f"FastVideo resolved {self.model_path} to {config}, not {EXPECTED_CONFIG}")
        self.sampling = SamplingParam.from_pretrained(str(self.model_path))
        from serve_app.backends import fastvideo_stream, fastvideo_ti2v, fastvideo_worker

        self._rpc(fastvideo_worker.set_vae_precision, precision=s.vae_precision)
        self._rpc(fastvideo_ti2v.install)
        if s.gpu_memory_limit_gb:
            self._rpc(fastvideo_worker.limit_memory, gigabytes=s.gpu_memory_limit_gb)
        if s.torch_compile:
            self._rpc(fastvideo_worker.compile_transformer)
        if s.cudnn_benchmark:
            self._rpc(fastvideo_worker.set_cudnn_benchmark, enabled=True)
        if s.vae_channels_last:
            self._rpc(fastvideo_worker.set_vae_channels_last)
        vae_kernels = self._rpc(fastvideo_worker.speed_up_vae) if s.vae_fused_kernels else {}
        self._rpc(fastvideo_stream.install)  # inert unless a request passes `encode`
        self.worker = self._rpc(fastvideo_worker.describe_worker)
        cfg = self.generator.fastvideo_args.pipeline_config
        self.worker.update(memory_profile=self.profile, text_encoder_cpu_offload=te_offload,
                           text_encoder_precisions=list(cfg.text_encoder_precisions),
                           vae_precision=s.vae_precision, torch_compile=s.torch_compile,
                           cudnn_benchmark=s.cudnn_benchmark, vae_channels_last=s.vae_channels_last,
                           vae_fused_kernels=bool(vae_kernels), encode_in_worker=self.encodes_in_worker,
                           gpu_memory_limit_gb=s.gpu_memory_limit_gb,
                           prestarted_worker=self._prestart_state())

    def _prestart_state(self) -> str:
        if self.prestarted is not None:
            return self.prestarted.state
        return "off (no placement group)" if self.settings.fastvideo_executor == "ray" else "off (mp executor)"

    @contextlib.contextmanager
    def eager(self):
        """No torch.compile and no cuDNN algorithm search for the self-check's throwaway shape."""
        from serve_app.backends import fastvideo_worker

        self._rpc(fastvideo_worker.set_throwaway_mode, on=True, cudnn_benchmark=self.settings.cudnn_benchmark)
        try:
            yield
        finally:
            self._rpc(fastvideo_worker.set_throwaway_mode, on=False, cudnn_benchmark=self.settings.cudnn_benchmark)

    def warmup_params(self, settings: Settings) -> list[GenerationParams]:
        """The default size, text- and image-to-video (each compiles its own DiT graph), when compiling."""
        if not settings.torch_compile:
            return []
        w, h, frames = settings.default_width, settings.default_height, settings.default_num_frames
        text = GenerationParams(prompt="warm-up", width=w, height=h, num_frames=frames, fps=settings.default_fps,
                                num_inference_steps=settings.default_steps, guidance_scale=1.0, seed=0)
        return [text, text.model_copy(update={"image_png": gray_png(w, h)})]

    def _rpc(self, fn, **kwargs):
        """Run `fn(worker_wrapper, **kwargs)` in the GPU worker process (module-level functions only)."""
        return self.generator.executor.collective_rpc(fn, kwargs=kwargs)[0]

    # --- generation ----------------------------------------------------------------------------
    def forward_batch(self, params: GenerationParams):
        from fastvideo.pipelines import ForwardBatch
        from fastvideo.utils import shallow_asdict

        sp = copy.deepcopy(self.sampling)
        sp.prompt = params.prompt
        if params.negative_prompt:
            sp.negative_prompt = params.negative_prompt
        sp.height, sp.width, sp.num_frames, sp.fps = params.height, params.width, params.num_frames, params.fps
        sp.num_inference_steps, sp.guidance_scale, sp.seed = (params.num_inference_steps, params.guidance_scale,
                                                              params.seed)
        sp.image_path, sp.save_video, sp.return_frames = None, False, True
        latent = ((params.num_frames - 1) // 4 + 1) * (params.height // 8) * (params.width // 8)
        batch = ForwardBatch(**shallow_asdict(sp), eta=0.0, n_tokens=latent,
                             VSA_sparsity=self.generator.fastvideo_args.VSA_sparsity)
        if params.image_png is not None:
            from serve_app.backends.fastvideo_ti2v import TI2V_IMAGE

            batch.extra[TI2V_IMAGE] = image_tensor(params.image_png)
        return batch

    def generate(self, batch: list[GenerationParams], on_progress: ProgressCallback) -> list[GeneratedVideo]:
        videos = []
        with self._busy:
            for index, params in enumerate(batch):
                start = time.perf_counter()
                encode = (dict(fps=params.fps, crf=self.settings.video_crf, preset=self.settings.video_preset)
                          if self.encodes_in_worker else None)
                result = self._forward(self.forward_batch(params), encode)
                payload = ({"mp4": result["mp4"], "shape": result["shape"]} if result.get("mp4") is not None
                           else {"frames": result["frames"][0]})
                videos.append(GeneratedVideo(
                    **payload, seed=params.seed, generation_sec=time.perf_counter() - start,
                    peak_vram_gb=round(result["peak_memory_mb"] / 1024, 2) if result.get("peak_memory_mb") else None,
                    batch_size=len(batch), stages=result.get("stages", {}),
                ))
                on_progress(index + 1, len(batch))
        return videos

    @property
    def encodes_in_worker(self) -> bool:
        """With the Ray executor (the one measured): mp keeps handing frames over by CUDA IPC."""
        return self.settings.encode_in_worker and self.settings.fastvideo_executor == "ray"

    def _forward(self, forward_batch, encode: dict | None = None) -> dict:
        from serve_app.backends import fastvideo_worker

        args = self.generator.fastvideo_args
        start = time.perf_counter()
        try:
            if self.settings.fastvideo_executor == "ray":
                result = self._rpc(fastvideo_worker.forward_frames, forward_batch=forward_batch,
                                   fastvideo_args=args, encode=encode)
                # where the time between the model and the result went (worker side, then the executor's hop)
                result["stages"].update(worker_forward=round(result["forward_s"], 4),
                                        worker_to_host=round(result["transfer_s"], 4),
                                        rpc_return=round(time.perf_counter() - start - result["forward_s"]
                                                         - result["transfer_s"], 4))
                return result
            # mp, frames: the video comes back by CUDA IPC; convert it here on the GPU, then copy 1.5 bytes a pixel.
            out = self.generator.executor.execute_forward(forward_batch, args)
            forward_s = time.perf_counter() - start
            extra = out.extra or {}
            result = {"frames": fastvideo_worker.video_to_i420(out.output).cpu().numpy(),
                      "peak_memory_mb": extra.get("peak_memory_mb"),
                      "stages": fastvideo_worker.stage_times(out.logging_info)}
            result["stages"].update(worker_forward=round(forward_s, 4),
                                    worker_to_host=round(time.perf_counter() - start - forward_s, 4))
            if isinstance(extra.get("serve_ti2v_trace"), dict):
                result["ti2v_trace"] = extra["serve_ti2v_trace"]
            return result
        except Exception as exc:
            if _is_fatal(exc):
                self._broken = f"{type(exc).__name__}: {exc}"
            raise

    # --- health --------------------------------------------------------------------------------
    def info(self) -> BackendInfo:
        import torch

        return BackendInfo(
            backend=self.name, model=str(self.model_path or self.settings.model), device="cuda",
            torch_version=torch.__version__, cuda_available=bool(self.worker) or torch.cuda.is_available(),
            device_name=self.worker.get("gpu", "unknown GPU"),
            details={"executor": self.settings.fastvideo_executor, "executor check": "worker answered"
                     if self.worker else "no answer", **{k: v for k, v in self.worker.items() if k != "stages"}},
        )

    def check(self) -> None:
        if self._broken:
            raise RuntimeError(f"FastVideo worker failed: {self._broken}")
        if self.generator is None:
            raise RuntimeError("FastVideo generator is not loaded")
        if self._busy.acquire(blocking=False):  # a busy worker proves itself by finishing its batch
            try:
                from serve_app.backends.fastvideo_worker import describe_worker

                self._rpc(describe_worker)
            finally:
                self._busy.release()

    def close(self) -> None:
        if self.generator is not None:
            try:
                self.generator.executor.shutdown()
            except Exception:  # noqa: BLE001 - best effort on the way down
                logger.exception("FastVideo executor shutdown failed")
            self.generator = None
        elif self.prestarted is not None:  # the load failed before the executor took it over
            self.prestarted.stop()


def gpu_memory_gb() -> float | None:
    """Memory of the node's first GPU, read through NVML: the Ray-executor replica itself holds no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total / 1e9
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML: fall back to torch, then to unknown
        try:
            import torch

            return torch.cuda.get_device_properties(0).total_memory / 1e9 if torch.cuda.is_available() else None
        except Exception:  # noqa: BLE001
            return None


def memory_profile(settings: Settings) -> str:
    """`auto` -> fit-32gb on cards (or caps) of 40 GB or less, speed above (FastWan needs about 30 GB)."""
    if settings.memory_profile != "auto":
        return settings.memory_profile
    memory = settings.gpu_memory_limit_gb or gpu_memory_gb()
    return "fit-32gb" if memory is not None and memory <= 40 else "speed"


def gray_png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def image_tensor(png: bytes):
    """Prepared PNG -> (1, 3, 1, H, W) float in [-1, 1], what the Wan VAE encodes."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(rgb).permute(2, 0, 1).div(127.5).sub(1.0)[None, :, None]


def _is_fatal(exc: Exception) -> bool:
    """A dead worker or a lost device; a bad request or an OOM leaves the backend usable."""
    text = f"{type(exc).__name__} {exc}"
    return any(k in text for k in ("RayActorError", "ActorDiedError", "WorkerCrashed", "EOFError",
                                   "BrokenPipe", "CUDA error", "device-side assert"))


def serve_video_generator_class(prestarted=None):
    """VideoGenerator whose Ray executor is `ServeRayExecutor` (FastVideo picks executors by a static lookup)."""
    import functools

    from fastvideo import VideoGenerator
    from fastvideo.worker.executor import Executor

    from serve_app.backends.fastvideo_worker import ServeRayExecutor

    class ServeVideoGenerator(VideoGenerator):
        @classmethod
        def from_fastvideo_args(cls, fastvideo_args, *, log_queue=None):
            executor = (functools.partial(ServeRayExecutor, prestarted=prestarted)
                        if fastvideo_args.distributed_executor_backend == "ray" else Executor.get_class(fastvideo_args))
            return cls(fastvideo_args=fastvideo_args, executor_class=executor, log_stats=False, log_queue=log_queue)

    return ServeVideoGenerator
