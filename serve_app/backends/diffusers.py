"""diffusers backend: WanPipeline (text-to-video) and WanImageToVideoPipeline (image-to-video), CPU or CUDA.

The CPU default runs this backend on the tiny model; on a GPU it is the documented fallback when
FastVideo is not installed. Both pipelines share one set of modules, loaded once.
"""

from __future__ import annotations

import io
import logging
import os
import time

from serve_app.backends.base import (
    Backend,
    BackendInfo,
    GeneratedVideo,
    GenerationParams,
    ProgressCallback,
)
from serve_app.backends.torch_utils import device_description, resolve_model_path
from serve_app.media.yuv import rgb_to_i420
from serve_app.settings import Settings

logger = logging.getLogger(__name__)


class DiffusersBackend(Backend):
    name = "diffusers"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.t2v = None
        self.i2v = None
        self.model_path = None

    def load(self) -> None:
        import torch
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline, \
            WanTransformer3DModel
        from transformers import AutoTokenizer, UMT5EncoderModel

        if self.settings.device == "cpu":
            # Ray sets OMP_NUM_THREADS=1 in a replica with num_cpus=1; the model may use every core.
            torch.set_num_threads(self.settings.cpu_threads or os.cpu_count() or 1)
        path = self.model_path = resolve_model_path(self.settings)
        dtype = torch.bfloat16 if self.settings.device == "cuda" else torch.float32
        parts = dict(
            tokenizer=AutoTokenizer.from_pretrained(path, subfolder="tokenizer"),
            text_encoder=UMT5EncoderModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype),
            transformer=WanTransformer3DModel.from_pretrained(path, subfolder="transformer", torch_dtype=dtype),
            # The Wan VAE is unstable in half precision: keep it float32.
            vae=AutoencoderKLWan.from_pretrained(path, subfolder="vae", torch_dtype=torch.float32),
            scheduler=UniPCMultistepScheduler.from_pretrained(path, subfolder="scheduler"),
        )
        self.t2v = WanPipeline(**parts, expand_timesteps=True).to(self.settings.device)
        self.i2v = WanImageToVideoPipeline(**parts, image_encoder=None, image_processor=None,
                                           expand_timesteps=True).to(self.settings.device)
        for pipe in (self.t2v, self.i2v):
            pipe.set_progress_bar_config(disable=True)

    def generate(self, batch: list[GenerationParams], on_progress: ProgressCallback) -> list[GeneratedVideo]:
        first = batch[0]
        if first.image_png is None:
            return self._run(self.t2v, batch, on_progress, {})
        # diffusers' image-to-video pipeline encodes one image per call, so each request runs on its own.
        from PIL import Image

        videos = []
        for i, params in enumerate(batch):
            image = Image.open(io.BytesIO(params.image_png)).convert("RGB")

            def step(done: int, total: int, i: int = i) -> None:
                on_progress(i * total + done, len(batch) * total)

            videos += self._run(self.i2v, [params], step, {"image": image})
        return videos

    def _run(self, pipe, batch: list[GenerationParams], on_progress: ProgressCallback, extra: dict):
        import torch

        first = batch[0]
        steps = first.num_inference_steps
        if self.settings.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def callback(_pipe, i, _t, tensors):
            on_progress(i + 1, steps)
            return tensors

        start = time.perf_counter()
        with torch.inference_mode():
            out = pipe(
                prompt=[p.prompt for p in batch],
                negative_prompt=[p.negative_prompt for p in batch],
                height=first.height,
                width=first.width,
                num_frames=first.num_frames,
                num_inference_steps=steps,
                guidance_scale=first.guidance_scale,
                generator=[torch.Generator("cpu").manual_seed(p.seed) for p in batch],
                output_type="pt",
                callback_on_step_end=callback,
                **extra,
            ).frames
        frames = rgb_to_i420(out).cpu().numpy()  # (B, T, H*3/2, W): YUV 4:2:0 made on the device
        elapsed = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 1e9 if self.settings.device == "cuda" else None
        return [
            GeneratedVideo(frames=frames[i], seed=p.seed, generation_sec=elapsed, peak_vram_gb=peak,
                           batch_size=len(batch))
            for i, p in enumerate(batch)
        ]

    def info(self) -> BackendInfo:
        import torch

        return BackendInfo(
            backend=self.name,
            model=str(self.model_path or self.settings.model),
            device=self.settings.device,
            torch_version=torch.__version__,
            cuda_available=torch.cuda.is_available(),
            device_name=device_description(self.settings.device),
        )

    def check(self) -> None:
        if self.t2v is None:
            raise RuntimeError("diffusers pipeline is not loaded")
        if self.settings.device == "cuda":
            import torch

            torch.cuda.synchronize()  # raises if the device is lost

    def close(self) -> None:
        self.t2v = self.i2v = None
