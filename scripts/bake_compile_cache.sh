#!/usr/bin/env bash
# Bake torch.compile's cache into the image, so that a new container reaches full speed without compiling.
# Run on a GPU host of the kind you deploy to (the cache is specific to the GPU architecture and the torch
# version; an RTX 5090's is no use on an H100): it starts the image once, lets it warm up, keeps what it
# compiled in ./compile-cache, and builds the image again with it (Dockerfile.ray copies ./compile-cache).
#   bash scripts/bake_compile_cache.sh fastwan-serve:0.2.0 [extra docker run args, e.g. -v fastwan-models:/models]
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:?usage: bake_compile_cache.sh IMAGE [docker run args]}; shift
mkdir -p compile-cache && chmod 0777 compile-cache
docker run --rm --gpus all -v "$PWD/compile-cache:/models/compile-cache" "$@" --entrypoint python "$IMAGE" \
  -m serve_app.launch configs/serve.yaml --until-ready
docker build -f Dockerfile.ray -t "$IMAGE" .
echo "baked $(find compile-cache -type f | wc -l) cache files into $IMAGE"
