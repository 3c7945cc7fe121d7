"""Build the tiny random-weight FastWan2.2-TI2V-5B stand-in used by tests and the CPU default.

Same layout and component classes as the real `FastVideo/FastWan2.2-TI2V-5B-Diffusers` (48-channel
Wan2.2 VAE with patchified RGB, WanTransformer3DModel, UMT5 text encoder, UniPC flow scheduler), at
toy size (about 2 MB), deterministic, offline. The folder is named `FastWan2.2-TI2V-5B-Diffusers` so
FastVideo resolves the FastWan2.2 TI2V pipeline config from it (FACTS 2).

    python -m serve_app.models.tiny --out models/tiny
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from serve_app.models.layout import MODEL_FOLDER_NAME, build_model_folder

TEXT_DIM = 32  # the text encoder width must equal the DiT's text_dim
VOCAB_WORDS = [
    "a", "an", "the", "cat", "dog", "bird", "fish", "car", "boat", "tree", "sky", "sea", "sun", "moon",
    "city", "street", "forest", "river", "mountain", "beach", "snow", "rain", "night", "day", "red",
    "blue", "green", "yellow", "white", "black", "small", "big", "fast", "slow", "running", "walking",
    "flying", "swimming", "jumping", "dancing", "in", "on", "over", "under", "with", "and", "of", "at",
    "camera", "shot", "close", "wide", "slow-motion", "cinematic", "light", "shadow", "water", "fire",
]


def build_tokenizer(out: Path) -> int:
    """A small Unigram tokenizer with T5's special ids (<pad>=0, </s>=1, <unk>=2); returns vocab size."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -2.0) for w in VOCAB_WORDS]
    pieces += [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    pieces += [("\u2581", -6.0)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )
    fast.save_pretrained(out)
    # T5TokenizerFast is what Wan checkpoints name; it loads the same tokenizer.json.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "T5TokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return len(pieces)


def build(out_root: Path) -> Path:
    """Write the tiny model under out_root/<MODEL_FOLDER_NAME>; returns that folder."""
    return build_model_folder(
        out_root,
        transformer=dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=48,
                         out_channels=48, text_dim=TEXT_DIM, freq_dim=32, ffn_dim=64, num_layers=2,
                         cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=1024),
        vae=dict(base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                 temperal_downsample=[False, True, True], in_channels=12, out_channels=12, patch_size=2,
                 scale_factor_spatial=16, scale_factor_temporal=4, is_residual=True),
        text_encoder=dict(d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                          relative_attention_num_buckets=8, relative_attention_max_distance=16,
                          feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0),
        write_tokenizer=build_tokenizer,
    )


def ensure(out_root: Path) -> Path:
    """Return the tiny model folder, building it first if it is missing."""
    target = Path(out_root) / MODEL_FOLDER_NAME
    if not (target / "model_index.json").exists():
        build(Path(out_root))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models/tiny", help="parent folder (default: models/tiny)")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args()
    path = build(Path(args.out)) if args.force else ensure(Path(args.out))
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"tiny model at {path} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
