"""What the tiny and full-size builders share: the FastWan2.2 folder layout FastVideo and diffusers load.

FastVideo picks its pipeline config from the folder's last path component, so every model we build
lives in a folder named exactly `FastWan2.2-TI2V-5B-Diffusers` (FACTS 2).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

MODEL_FOLDER_NAME = "FastWan2.2-TI2V-5B-Diffusers"
HF_MODEL_ID = "FastVideo/FastWan2.2-TI2V-5B-Diffusers"

# The Wan2.2 VAE's per-channel latent statistics (48 channels), as in Wan-AI/Wan2.2-TI2V-5B-Diffusers.
WAN22_VAE_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]
WAN22_VAE_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]


def write_scheduler(folder: Path) -> None:
    """UniPC flow-matching scheduler, without the keys FastVideo 0.2.1 rejects (shift_terminal, sigma_*)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "_class_name": "UniPCMultistepScheduler",
        "_diffusers_version": "0.35.0",
        "num_train_timesteps": 1000,
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": True,
        "flow_shift": 5.0,
        "solver_order": 2,
        "predict_x0": True,
        "solver_type": "bh2",
        "lower_order_final": True,
        "final_sigmas_type": "zero",
        "timestep_spacing": "linspace",
    }
    (folder / "scheduler_config.json").write_text(json.dumps(config, indent=2))


def write_model_index(folder: Path) -> None:
    """model_index.json as the FastWan2.2 repo has it: FastVideo reads `_class_name`, diffusers the parts."""
    index = {
        "_class_name": "WanDMDPipeline",
        "_diffusers_version": "0.35.0",
        "boundary_ratio": None,
        "expand_timesteps": True,
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "transformer_2": [None, None],
        "vae": ["diffusers", "AutoencoderKLWan"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def build_model_folder(out_root: Path, *, transformer: dict, vae: dict, text_encoder: dict, write_tokenizer,
                       device: str = "cpu", dit_dtype: str = "bfloat16", other_dtype: str = "float32") -> Path:
    """Random-weight FastWan2.2 folder under out_root/<MODEL_FOLDER_NAME>, written whole or not at all.

    The tiny and full-size builders differ only in the sizes they pass. Weights are drawn under
    torch.manual_seed(0) on `device` (a GPU builds the 5B model in about a minute).
    """
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    target = Path(out_root) / MODEL_FOLDER_NAME
    Path(out_root).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=out_root))
    try:
        torch.manual_seed(0)
        vocab = write_tokenizer(work / "tokenizer")
        with torch.device(device):
            te = UMT5EncoderModel(UMT5Config(vocab_size=max(vocab, text_encoder.pop("vocab_size", 0)),
                                             **text_encoder)).eval()
            te.to(getattr(torch, other_dtype)).save_pretrained(work / "text_encoder")
            del te
            dit = WanTransformer3DModel(**transformer)
            dit.to(getattr(torch, dit_dtype)).save_pretrained(work / "transformer")
            del dit
            v = AutoencoderKLWan(**vae, latents_mean=WAN22_VAE_LATENTS_MEAN, latents_std=WAN22_VAE_LATENTS_STD)
            v.to(getattr(torch, other_dtype)).save_pretrained(work / "vae")
            del v
        write_scheduler(work / "scheduler")
        write_model_index(work)
        for path in [work, *work.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
