"""A request as FastVideo takes it: its `ForwardBatch`, and the reference image as the VAE's input tensor."""

from __future__ import annotations

import copy
import io

from serve_app.contracts import GenerationParams


def attention_tokens(width: int, height: int, num_frames: int) -> int:
    """The DiT's self-attention length for a video: latent frames x latent patches (TI2V-5B's VAE makes 4x16x16
    pixels into one latent, the DiT patches 2x2 of those): 27,280 at 1280x704x121."""
    return ((num_frames - 1) // 4 + 1) * (height // 32) * (width // 32)


def forward_batch(sampling, params: GenerationParams, vsa_sparsity: float):
    """FastVideo's ForwardBatch for one request, from the model's SamplingParam defaults."""
    from fastvideo.pipelines import ForwardBatch
    from fastvideo.utils import shallow_asdict

    from serve_app.backends.fastvideo.ti2v import TI2V_IMAGE

    sp = copy.deepcopy(sampling)
    sp.prompt = params.prompt
    if params.negative_prompt:
        sp.negative_prompt = params.negative_prompt
    sp.height, sp.width, sp.num_frames, sp.fps = params.height, params.width, params.num_frames, params.fps
    sp.num_inference_steps, sp.guidance_scale, sp.seed = params.num_inference_steps, params.guidance_scale, params.seed
    sp.image_path, sp.save_video, sp.return_frames = None, False, True
    latent = ((params.num_frames - 1) // 4 + 1) * (params.height // 8) * (params.width // 8)
    batch = ForwardBatch(**shallow_asdict(sp), eta=0.0, n_tokens=latent, VSA_sparsity=vsa_sparsity)
    if params.image_png is not None:
        batch.extra[TI2V_IMAGE] = image_tensor(params.image_png)
    return batch


def image_tensor(png: bytes):
    """Prepared PNG -> (1, 3, 1, H, W) float in [-1, 1], what the Wan VAE encodes."""
    import numpy as np
    import torch
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(rgb).permute(2, 0, 1).div(127.5).sub(1.0)[None, :, None]
