"""Image-to-video for FastWan2.2 on FastVideo: Wan2.2 TI2V first-frame conditioning in the 3-step DMD loop.

FastVideo 0.2.1's DMD stage ignores the image (upstream issues #785, #1153), and its input stage
would resize the image to a different output size. This stage replaces the pipeline's denoising
stage inside the worker (no change to site-packages) and does what Wan2.2 TI2V does:

- the prepared image (already the output size) is encoded by the VAE into the first latent frame z0;
- before every transformer call the first latent frame is set to z0, and its tokens get timestep 0
  while the rest get t (per-token timesteps, `expand_timesteps`);
- after every step, and at the end, the first frame is set to z0 again, so the decoder sees it;
- the DMD schedule (1000, 757, 522) and its noise draws are unchanged.

Without an image the stock DMD stage runs, so text-to-video is untouched. Runs in the GPU worker;
stages.py swaps it in.
"""

from __future__ import annotations

import torch
from fastvideo.distributed import get_local_torch_device
from fastvideo.distributed.communication_op import sequence_model_parallel_shard
from fastvideo.distributed.parallel_state import get_sp_world_size
from fastvideo.forward_context import set_forward_context
from fastvideo.models.utils import pred_noise_to_pred_video
from fastvideo.pipelines.stages.denoising import DmdDenoisingStage
from fastvideo.utils import dict_to_3d_list

TI2V_IMAGE = "serve_ti2v_image"  # batch.extra key: (1, 3, 1, H, W) float in [-1, 1], already H x W


class Ti2vDmdDenoisingStage(DmdDenoisingStage):
    def __init__(self, transformer, scheduler, vae) -> None:
        super().__init__(transformer, scheduler)
        self.vae = vae

    def observe_first_frame(self, batch, step: int, latents: torch.Tensor) -> None:
        """Called with the latents at each step and at the end, the first frame set (a seam for tests)."""

    def forward(self, batch, fastvideo_args):
        image = batch.extra.get(TI2V_IMAGE)
        if image is None:
            return super().forward(batch, fastvideo_args)
        return self._denoise_from_first_frame(batch, fastvideo_args, image)

    @torch.no_grad()
    def encode_first_frame(self, image: torch.Tensor) -> torch.Tensor:
        """Normalised VAE latent of the image: (1, C, 1, h, w), as the DiT sees latents."""
        device = get_local_torch_device()
        home = next(self.vae.parameters()).device
        self.vae.to(device)
        try:
            dtype = next(self.vae.parameters()).dtype
            z = self.vae.encode(image.to(device=device, dtype=dtype)).mean.float()
        finally:
            self.vae.to(home)
        shift, scale = self.vae.shift_factor, self.vae.scaling_factor
        z = z - (shift.to(z.device, z.dtype) if isinstance(shift, torch.Tensor) else (shift or 0.0))
        return z * (scale.to(z.device, z.dtype) if isinstance(scale, torch.Tensor) else scale)

    @torch.no_grad()
    def _denoise_from_first_frame(self, batch, fastvideo_args, image: torch.Tensor):
        device = get_local_torch_device()
        dtype = torch.bfloat16
        autocast = not fastvideo_args.disable_autocast
        latents = batch.latents  # (B, T, C, H, W): the DMD pipeline's layout
        shape = latents.shape
        z0 = self.encode_first_frame(image)[:, :, 0].to(latents.device, latents.dtype)  # (1, C, H, W)
        patch = fastvideo_args.pipeline_config.dit_config.arch_config.patch_size
        tokens_per_frame = (shape[3] // patch[1]) * (shape[4] // patch[2])

        cond_kwargs = self.prepare_extra_func_kwargs(self.transformer.forward, {
            "encoder_hidden_states_image": batch.image_embeds,
            "mask_strategy": dict_to_3d_list(None, t_max=50, l_max=60, h_max=24),
            "encoder_hidden_states_2": batch.clip_embedding_pos,
            "encoder_attention_mask": batch.prompt_attention_mask,
        })
        cfg_scale = fastvideo_args.pipeline_config.embedded_cfg_scale
        timesteps = torch.tensor(fastvideo_args.pipeline_config.dmd_denoising_steps, dtype=torch.long, device=device)
        for i, t in enumerate(timesteps):
            latents = latents.clone()
            latents[:, 0] = z0
            self.observe_first_frame(batch, i, latents)
            # per-frame timesteps for the x0 conversion, per-token timesteps for the DiT
            t_frames = torch.full((shape[0], shape[1]), int(t), dtype=torch.long, device=device)
            t_frames[:, 0] = 0
            t_tokens = _this_ranks_tokens(t_frames.repeat_interleave(tokens_per_frame, dim=1))
            guidance = (torch.full((shape[0],), cfg_scale * 1000.0, device=device, dtype=dtype)
                        if cfg_scale is not None else None)
            with torch.autocast(device_type="cuda", dtype=dtype, enabled=autocast), \
                    set_forward_context(current_timestep=i, attn_metadata=None, forward_batch=batch):
                batch.is_cfg_negative = False
                pred_noise = self.transformer(latents.to(dtype).permute(0, 2, 1, 3, 4), batch.prompt_embeds, t_tokens,
                                              guidance=guidance, **cond_kwargs).permute(0, 2, 1, 3, 4)
            pred_video = pred_noise_to_pred_video(pred_noise=pred_noise.flatten(0, 1),
                                                  noise_input_latent=latents.flatten(0, 1),
                                                  timestep=t_frames, scheduler=self.scheduler).unflatten(0, shape[:2])
            if i < len(timesteps) - 1:
                noise = torch.randn(shape, dtype=pred_video.dtype, generator=batch.generator[0]).to(device)
                next_t = timesteps[i + 1] * torch.ones([1], dtype=torch.long, device=device)
                latents = self.scheduler.add_noise(pred_video.flatten(0, 1), noise.flatten(0, 1),
                                                   next_t).unflatten(0, shape[:2])
            else:
                latents = pred_video
        latents = latents.clone()
        latents[:, 0] = z0
        self.observe_first_frame(batch, len(timesteps), latents)
        batch.latents = latents.permute(0, 2, 1, 3, 4)  # (B, C, T, H, W) for the decoding stage
        return batch


def _this_ranks_tokens(t_tokens: torch.Tensor) -> torch.Tensor:
    """Per-token timesteps for the tokens this GPU holds. With a replica of several GPUs the DiT shards its
    tokens (padded, in rank order) right after the patch embedding and embeds the timesteps for the tokens it
    holds: per-token timesteps must come sharded the same way, or the block's modulation and the tokens differ
    in length. One GPU: all of them."""
    if get_sp_world_size() == 1:
        return t_tokens
    return sequence_model_parallel_shard(t_tokens, dim=1)[0]
