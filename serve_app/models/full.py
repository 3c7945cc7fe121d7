"""Build a full-size random-weight FastWan2.2-TI2V-5B (the real shapes) for speed and memory runs on a GPU.

Random weights give real timings and memory, not real pictures. DiT 5.0 B and UMT5-XXL 5.7 B
parameters are drawn on the GPU and written in bf16 (about 23 GB), in
the folder layout FastVideo loads.

    python -m serve_app.models.full --out /tmp/full --device cuda
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from serve_app.models.layout import build_model_folder
from serve_app.models.tiny import build_tokenizer

TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48,
                   out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
VAE = dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
           temperal_downsample=[False, True, True], in_channels=12, out_channels=12, patch_size=2,
           scale_factor_spatial=16, scale_factor_temporal=4, is_residual=True)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def build(out_root: Path, device: str = "cuda") -> Path:
    return build_model_folder(out_root, transformer=TRANSFORMER, vae=VAE, text_encoder=dict(UMT5_XXL),
                              write_tokenizer=build_tokenizer, device=device, dit_dtype="bfloat16",
                              other_dtype="bfloat16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="parent folder")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    start = time.perf_counter()
    path = build(Path(args.out), args.device)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"full-size model at {path} ({size / 1e9:.1f} GB) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
