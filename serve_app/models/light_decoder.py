"""Write a random-weight light decoder (the taew2_2 layout of `serve_app.backends.light_decoder`).

For speed figures and tests of the loading code only: random weights make noise, not pictures. Real
users supply the trained checkpoint (`light_decoder_path`).

    python -m serve_app.models.light_decoder --out models/light-decoder.pth
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from serve_app.backends.light_decoder import LightDecoder


def build(out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(LightDecoder().state_dict(), out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="file to write (.pth)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = build(args.out, args.seed)
    print(f"random-weight light decoder at {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
