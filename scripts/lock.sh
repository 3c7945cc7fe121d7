#!/usr/bin/env bash
# Regenerate the lock of the Python environment (requirements/*.txt) from pyproject.toml, with uv.
# One universal lock (Python >= 3.11, Linux x86_64 and others) with hashes; torch and torchvision are pinned by
# version in requirements/torch.txt instead (the image takes their CUDA 12.8 builds, CI the PyPI ones), and
# FastVideo, installed without its own pins, in requirements/fastvideo.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
not_locked=(torch torchvision triton cuda-bindings cuda-pathfinder cuda-toolkit nvidia-cublas nvidia-cuda-cccl
  nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-cusolver
  nvidia-cusparse nvidia-cusparselt-cu13 nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx
  nvidia-curand)
skip=(); for p in "${not_locked[@]}"; do skip+=(--no-emit-package "$p"); done
common=(--universal --python-version 3.11 --generate-hashes --constraint requirements/torch.txt --quiet)
"$UV" pip compile pyproject.toml --extra diffusers --extra s3 --extra gpu "${common[@]}" "${skip[@]}" \
  --custom-compile-command "bash scripts/lock.sh" -o requirements/lock.txt
"$UV" pip compile pyproject.toml --extra diffusers --extra s3 --extra gpu --extra test "${common[@]}" "${skip[@]}" \
  --constraint requirements/lock.txt --custom-compile-command "bash scripts/lock.sh" -o requirements/lock-test.txt
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" fastvideo==0.2.1
echo "fastvideo==0.2.1 --hash=sha256:$(sha256sum "$tmp"/fastvideo-0.2.1-*.whl | cut -d' ' -f1)" > requirements/fastvideo.txt
