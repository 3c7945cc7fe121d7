"""FastVideo backend: FastWan2.2's 3-step DMD pipeline through FastVideo's VideoGenerator (CUDA only).

The executor is a setting. `ray` (default) runs the GPU worker as a Ray actor inside the generator
replica's placement group, so nothing needs a shared-memory IPC namespace (no `--ipc=host`, 64 MB
/dev/shm is enough). `mp` is FastVideo's default multiprocessing executor, for comparison.
A batch runs its requests one after another: FastVideo takes one prompt per forward pass and its DMD
pipeline shares random state across a batch, so each request keeps its own seed only when run alone.
FastVideo is imported in `load`, so this module imports anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

from serve_app.backends.base import Backend, ProgressCallback
from serve_app.backends.fastvideo.compat import check_fastvideo_version
from serve_app.backends.fastvideo.early_vae import report as early_vae_report
from serve_app.backends.fastvideo.fast_profile import apply_speed_profile
from serve_app.backends.fastvideo.memory import memory_profile
from serve_app.backends.fastvideo.paths import EXPECTED_CONFIG, fastvideo_model_path
from serve_app.backends.fastvideo.request import attention_tokens, forward_batch
from serve_app.backends.fastvideo.startup import check_frames, early_vae, generator_kwargs
from serve_app.backends.model_files import resolve_model_path
from serve_app.contracts import BackendInfo, GenerationParams, VideoResult
from serve_app.settings import FastVideoSettings, GenerationSettings, ModelSettings

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]):
    """These environment variables while FastVideo builds its workers (its executors copy them over), then none."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


class FastVideoBackend(Backend):
    name = "fastvideo"
    batches = False  # one forward pass per request (see the module docstring)

    def __init__(self, models: ModelSettings, generation: GenerationSettings, fastvideo: FastVideoSettings):
        super().__init__(models, generation)
        self.fastvideo = fastvideo
        self.generator = None
        self.model_path: Path | None = None
        self.worker = None  # worker_ops.WorkerInfo once loaded
        self.options: dict = {}
        self.cache: dict = {}
        self.attention, self.profile, self.noise = {}, {}, {}  # the worker's attention kernel, profile, noise draw
        self.prestarted = None
        self._busy = threading.Lock()
        self._broken: str | None = None

    # --- start-up ----------------------------------------------------------------------------------
    def load(self) -> None:
        cfg = self.fastvideo
        version = check_fastvideo_version(cfg.fastvideo_allow_untested)
        self.model_path = fastvideo_model_path(resolve_model_path(self.models), self.models.model_links_dir)
        profile = memory_profile(cfg)
        kwargs = generator_kwargs(cfg, profile)
        if cfg.fastvideo_executor == "ray":  # first: its import of FastVideo overlaps the ones below
            from serve_app.backends.fastvideo.prestart import prestart_worker

            self.prestarted = prestart_worker(warm_compile_pool=cfg.torch_compile, early=early_vae(
                cfg, self.models, self.generation, self.model_path, kwargs))
        from fastvideo.api.sampling_param import SamplingParam

        from serve_app.backends.fastvideo.executor import PRESTARTED, ServeVideoGenerator

        token = PRESTARTED.set(self.prestarted)
        try:
            with scoped_environ(self.environment()):
                self.generator = ServeVideoGenerator.from_pretrained(str(self.model_path), **kwargs)
        finally:
            PRESTARTED.reset(token)
        config = type(self.generator.fastvideo_args.pipeline_config).__name__
        if config != EXPECTED_CONFIG:
            raise RuntimeError(f"FastVideo resolved {self.model_path} to {config}, not {EXPECTED_CONFIG}")
        self.sampling = SamplingParam.from_pretrained(str(self.model_path))
        vae_kernels = self._configure_worker()
        self.worker = self.run_in_worker(_ops().describe_worker)
        self.options = dict(
            fastvideo=version, memory_profile=profile, text_encoder_cpu_offload=kwargs["text_encoder_cpu_offload"],
            text_encoder_precisions=list(self.generator.fastvideo_args.pipeline_config.text_encoder_precisions),
            vae_precision=cfg.vae_precision, torch_compile=cfg.torch_compile, cudnn_benchmark=cfg.cudnn_benchmark,
            vae_channels_last=cfg.vae_channels_last, vae_fused_kernels=cfg.vae_fused_kernels, **vae_kernels,
            encode_in_worker=self.encodes_in_worker, gpu_memory_limit_gb=cfg.gpu_memory_limit_gb,
            gpus_per_replica=self.generator.fastvideo_args.num_gpus,
            prestarted_worker=self._prestart_state(), **self.cache, **self.attention, **self.profile, **self.noise,
            **(self.run_in_worker(early_vae_report) if self.prestarted is not None else {}),
        )

    def environment(self) -> dict[str, str]:
        """What FastVideo reads from the environment: per-stage times (cheap) and the attention backend."""
        env = {"FASTVIDEO_STAGE_LOGGING": "1"}
        if self.fastvideo.attention_backend != "auto":
            env["FASTVIDEO_ATTENTION_BACKEND"] = self.fastvideo.attention_backend
        return env

    def _configure_worker(self) -> dict:
        """The model settings, applied in the GPU worker; returns what the VAE's kernels and compile changed."""
        ops, cfg = _ops(), self.fastvideo
        self.run_in_worker(ops.set_vae_precision, precision=cfg.vae_precision)
        self.noise = {"initial_noise": self.run_in_worker(ops.install_stages).get("latent_preparation_stage")}
        if cfg.gpu_memory_limit_gb:
            self.run_in_worker(ops.limit_memory, gigabytes=cfg.gpu_memory_limit_gb)
        self.cache = self.run_in_worker(ops.use_compile_cache, directory=str(cfg.compile_cache_dir))
        g = self.generation  # the kernels are timed at the default size's attention shape
        tokens = attention_tokens(g.default_width, g.default_height, g.default_num_frames)
        self.attention = self.run_in_worker(ops.choose_attention_kernel, preference=cfg.attention_kernel, tokens=tokens)
        self.profile = apply_speed_profile(self.run_in_worker, cfg.speed_profile, cfg.light_decoder_path)
        if cfg.torch_compile:  # the DiT's blocks, their attention inside the graph (dit_compile.py)
            self.attention.update(self.run_in_worker(ops.compile_transformer))
        if cfg.cudnn_benchmark:
            self.run_in_worker(ops.set_cudnn_benchmark, enabled=True)
        if cfg.vae_channels_last:
            self.run_in_worker(ops.set_vae_channels_last)
        return self.run_in_worker(ops.speed_up_vae, fused=cfg.vae_fused_kernels, compiled=cfg.torch_compile
                                  and cfg.vae_compile, blocks=cfg.vae_compile_blocks)

    def _prestart_state(self) -> str:
        if self.prestarted is not None:
            return self.prestarted.state
        return "off (no placement group)" if self.fastvideo.fastvideo_executor == "ray" else "off (mp executor)"

    @contextlib.contextmanager
    def eager(self):
        """No torch.compile and no cuDNN algorithm search for the self-check's throwaway shape."""
        ops, benchmark = _ops(), self.fastvideo.cudnn_benchmark
        self.run_in_worker(ops.set_throwaway_mode, on=True, cudnn_benchmark=benchmark)
        try:
            yield
        finally:
            self.run_in_worker(ops.set_throwaway_mode, on=False, cudnn_benchmark=benchmark)

    def warm_up(self) -> dict:
        """The default size's compiled graphs (text- and image-to-video) and the VAE's compiled blocks, without a
        whole video each: one denoising step of the DiT (each step runs the same graphs), and the VAE decodes three
        latent frames once (from the third chunk on every conv and compiled block sees its shapes: streaming.py)."""
        from serve_app.backends.fastvideo.streaming import WARMUP_LATENT_FRAMES

        ops, timings = _ops(), {}
        params_list = self.warmup_params()
        if not params_list:
            return timings
        self.run_in_worker(ops.limit_denoising_steps, count=1)
        try:
            for params in params_list:
                batch = self.forward_batch(params)
                batch.extra[WARMUP_LATENT_FRAMES] = 1 if params.image_png else 3  # the decode: same shapes
                start = time.perf_counter()
                out = self.forward(batch, ops.Delivery(width=params.width, height=params.height))
                kind = "image-to-video" if params.image_png else "text-to-video"
                check_frames(out.frames, params, kind)  # the warm-up may stand in for the self-check
                timings[kind] = round(time.perf_counter() - start, 2)
        finally:
            self.run_in_worker(ops.limit_denoising_steps, count=None)
        return timings

    def warmup_params(self) -> list[GenerationParams]:
        """The default size, text- and image-to-video (each compiles its own DiT graph), when compiling."""
        if not self.fastvideo.torch_compile:
            return []
        g = self.generation
        text = GenerationParams(prompt="warm-up", width=g.default_width, height=g.default_height,
                                num_frames=g.default_num_frames, fps=g.default_fps,
                                num_inference_steps=g.default_steps, guidance_scale=1.0, seed=0)
        from serve_app.media.images import solid_png

        return [text, text.model_copy(update={"image_png": solid_png(g.default_width, g.default_height)})]

    def run_in_worker(self, fn, **kwargs):
        """Run `fn(worker_wrapper, **kwargs)` in the GPU worker process (module-level functions only)."""
        return self.generator.executor.collective_rpc(fn, kwargs=kwargs)[0]

    # --- generation --------------------------------------------------------------------------------
    @property
    def encodes_in_worker(self) -> bool:
        """With the Ray executor (the one measured): mp keeps handing frames over by CUDA IPC."""
        return self.fastvideo.encode_in_worker and self.fastvideo.fastvideo_executor == "ray"

    def forward_batch(self, params: GenerationParams):
        return forward_batch(self.sampling, params, self.generator.fastvideo_args.VSA_sparsity)

    def generate(self, batch: list[GenerationParams], on_progress: ProgressCallback) -> list[VideoResult]:
        from serve_app.media.video import encode_mp4_bytes

        ops = _ops()
        videos = []
        with self._busy:
            for index, params in enumerate(batch):
                start = time.perf_counter()
                width, height = params.output_size
                delivery = ops.Delivery(width=width, height=height, encode=self.encodes_in_worker, fps=params.fps,
                                        crf=self.generation.video_crf, preset=self.generation.video_preset)
                out = self.forward(self.forward_batch(params), delivery)
                generation_sec = time.perf_counter() - start
                encode_sec = out.encode_tail_s
                mp4 = out.mp4
                if mp4 is None:
                    mp4 = encode_mp4_bytes(out.frames, params.fps, self.generation.video_crf,
                                           self.generation.video_preset)
                    encode_sec = time.perf_counter() - start - generation_sec
                frames, height, width = out.shape
                videos.append(VideoResult(
                    mp4=mp4, num_frames=frames, height=height, width=width, seed=params.seed,
                    generation_sec=generation_sec, encode_sec=encode_sec, batch_size=len(batch),
                    peak_vram_gb=round(out.peak_memory_mb / 1024, 2) if out.peak_memory_mb else None,
                    stages={**out.stages, **({"encode_tail": round(out.encode_tail_s, 4)} if out.mp4 else {})},
                ))
                on_progress(index + 1, len(batch))
        return videos

    def forward(self, batch, delivery=None):
        """One forward pass in the GPU worker (`worker_ops.ForwardOutput`), the executor's hop timed.
        `delivery`: size and encoding of what comes back (default: the frames at the model's size)."""
        ops, args = _ops(), self.generator.fastvideo_args
        delivery = delivery or ops.Delivery(width=batch.width, height=batch.height)
        start = time.perf_counter()
        try:
            if self.fastvideo.fastvideo_executor == "ray":
                out = self.run_in_worker(ops.forward, forward_batch=batch, fastvideo_args=args, delivery=delivery)
                out.stages.update(worker_forward=round(out.forward_s, 4), worker_to_host=round(out.transfer_s, 4),
                                  rpc_return=round(time.perf_counter() - start - out.forward_s - out.transfer_s, 4))
                return out
            # mp: the video comes back by CUDA IPC; convert it here on the GPU, then copy 1.5 bytes a pixel.
            result = self.generator.executor.execute_forward(batch, args)
            forward_s = time.perf_counter() - start
            frames = ops.video_to_i420(result.output, delivery.width, delivery.height).cpu().numpy()[0]
            peak = (result.extra or {}).get("peak_memory_mb")
            return ops.ForwardOutput(frames=frames, shape=(batch.num_frames, delivery.height, delivery.width),
                                     peak_memory_mb=peak, stages=ops.stage_times(result.logging_info),
                                     forward_s=forward_s, transfer_s=time.perf_counter() - start - forward_s)
        except Exception as exc:
            if _is_fatal(exc):
                self._broken = f"{type(exc).__name__}: {exc}"
            raise

    # --- health ------------------------------------------------------------------------------------
    def info(self) -> BackendInfo:
        import torch

        worker = self.worker.model_dump() if self.worker is not None else {}
        return BackendInfo(
            backend=self.name, model=str(self.model_path or self.models.model), device="cuda",
            torch_version=torch.__version__, cuda_available=bool(worker) or torch.cuda.is_available(),
            device_name=worker.get("gpu", "unknown GPU"),
            details={"executor": self.fastvideo.fastvideo_executor,
                     "executor check": "worker answered" if worker else "no answer",
                     **{k: v for k, v in worker.items() if k != "stages"}, **self.options},
        )

    def check(self) -> None:
        if self._broken:
            raise RuntimeError(f"FastVideo worker failed: {self._broken}")
        if self.generator is None:
            raise RuntimeError("FastVideo generator is not loaded")
        if self._busy.acquire(blocking=False):  # a busy worker proves itself by finishing its batch
            try:
                self.run_in_worker(_ops().describe_worker)
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


def _ops():
    """worker_ops imports torch at module level: import it only once a GPU backend runs."""
    from serve_app.backends.fastvideo import worker_ops

    return worker_ops


def _is_fatal(exc: Exception) -> bool:
    """A dead worker or a lost device; a bad request or an OOM leaves the backend usable."""
    text = f"{type(exc).__name__} {exc}"
    return any(k in text for k in ("RayActorError", "ActorDiedError", "WorkerCrashed", "EOFError",
                                   "BrokenPipe", "CUDA error", "device-side assert"))
