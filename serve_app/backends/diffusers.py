"""diffusers backend: WanPipeline (text-to-video) and WanImageToVideoPipeline (image-to-video), CPU or CUDA.

The CPU default runs this backend on the tiny model; on a GPU it is the documented fallback when
FastVideo is not installed. Both pipelines share one set of modules, loaded once.
"""

from __future__ import annotations

import io
import logging
import os
import time

from serve_app.backends.base import Backend, ProgressCallback
from serve_app.backends.model_files import device_description, resolve_model_path
from serve_app.contracts import BackendInfo, GenerationParams, VideoResult
from serve_app.media.video import encode_mp4_bytes
from serve_app.media.yuv import fit_video, rgb_to_i420

logger = logging.getLogger(__name__)


class DiffusersBackend(Backend):
    name = "diffusers"
    batches = True  # one pipeline call denoises the whole batch

    def __init__(self, models, generation):
        super().__init__(models, generation)
        self.t2v = None
        self.i2v = None
        self.model_path = None

    def load(self) -> None:
        import torch
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline, \
            WanTransformer3DModel
        from transformers import AutoTokenizer, UMT5EncoderModel

        if self.models.device == "cpu":
            # Ray sets OMP_NUM_THREADS=1 in a replica with num_cpus=1; the model may use every core.
            torch.set_num_threads(self.models.cpu_threads or os.cpu_count() or 1)
        path = self.model_path = resolve_model_path(self.models)
        dtype = torch.bfloat16 if self.models.device == "cuda" else torch.float32
        parts = dict(
            tokenizer=AutoTokenizer.from_pretrained(path, subfolder="tokenizer"),
            text_encoder=UMT5EncoderModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype),
            transformer=WanTransformer3DModel.from_pretrained(path, subfolder="transformer", torch_dtype=dtype),
            # The Wan VAE is unstable in half precision: keep it float32.
            vae=AutoencoderKLWan.from_pretrained(path, subfolder="vae", torch_dtype=torch.float32),
            scheduler=UniPCMultistepScheduler.from_pretrained(path, subfolder="scheduler"),
        )
        self.t2v = WanPipeline(**parts, expand_timesteps=True).to(self.models.device)
        self.i2v = WanImageToVideoPipeline(**parts, image_encoder=None, image_processor=None,
                                           expand_timesteps=True).to(self.models.device)
        for pipe in (self.t2v, self.i2v):
            pipe.set_progress_bar_config(disable=True)

    def generate(self, batch: list[GenerationParams], on_progress: ProgressCallback) -> list[VideoResult]:
        start = time.perf_counter()
        frames, peak = self.render(batch, on_progress)
        elapsed = time.perf_counter() - start
        videos = []
        for one, p in zip(frames, batch):
            encode_start = time.perf_counter()
            mp4 = encode_mp4_bytes(one, p.fps, self.generation.video_crf, self.generation.video_preset)
            videos.append(VideoResult(
                mp4=mp4, num_frames=one.shape[0], height=one.shape[1] * 2 // 3, width=one.shape[2],
                seed=p.seed, generation_sec=elapsed, encode_sec=time.perf_counter() - encode_start,
                peak_vram_gb=peak, batch_size=len(batch)))
        return videos

    def render(self, batch: list[GenerationParams], on_progress: ProgressCallback):
        """Each request's frames before encoding, (T, H*3/2, W) uint8 I420 at its output size, and the peak GPU
        memory (GB)."""
        if batch[0].image_png is None:
            return self._run(self.t2v, batch, on_progress, {})
        # diffusers' image-to-video pipeline encodes one image per call, so each request runs on its own.
        from PIL import Image

        frames, peak = [], None
        for i, params in enumerate(batch):
            image = Image.open(io.BytesIO(params.image_png)).convert("RGB")

            def step(done: int, total: int, i: int = i) -> None:
                on_progress(i * total + done, len(batch) * total)

            one, peak = self._run(self.i2v, [params], step, {"image": image})
            frames += one
        return frames, peak

    def _run(self, pipe, batch: list[GenerationParams], on_progress: ProgressCallback, extra: dict):
        import torch

        first = batch[0]
        steps = first.num_inference_steps
        if self.models.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def callback(_pipe, i, _t, tensors):
            on_progress(i + 1, steps)
            return tensors

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
        # YUV 4:2:0 made on the device, at each request's output size
        frames = [rgb_to_i420(fit_video(out[i:i + 1], *p.output_size)).cpu().numpy()[0] for i, p in enumerate(batch)]
        peak = torch.cuda.max_memory_allocated() / 1e9 if self.models.device == "cuda" else None
        return frames, peak

    def info(self) -> BackendInfo:
        import torch

        return BackendInfo(
            backend=self.name,
            model=str(self.model_path or self.models.model),
            device=self.models.device,
            torch_version=torch.__version__,
            cuda_available=torch.cuda.is_available(),
            device_name=device_description(self.models.device),
        )

    def check(self) -> None:
        if self.t2v is None:
            raise RuntimeError("diffusers pipeline is not loaded")
        if self.models.device == "cuda":
            import torch

            torch.cuda.synchronize()  # raises if the device is lost

    def close(self) -> None:
        self.t2v = self.i2v = None
