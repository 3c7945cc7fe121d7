#!/usr/bin/env bash
# Pack the Python packages the GPU machine lacks (Ray, FastVideo, diffusers, PyAV, FastAPI, pydantic, ...)
# into .gpu/site.tar.xz: installed wheels compressed with xz fit the 64 MiB a device call may carry,
# where the wheels themselves (83 MB with PyAV) do not. On the GPU machine: tar -C /tmp/site -xJf .gpu/site.tar.xz
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS_SH=${WHEELS_SH:-../shared/device/wheels.sh}
[ -d .whl ] || bash "$WHEELS_SH" pydantic-settings==2.16.3 python-dotenv python-multipart av==18.1.0 \
  prometheus-client httpx httpcore h11 anyio sniffio pytest-timeout  # pytest-timeout: gpu_check.sh bounds each test
stage=$(mktemp -d)
for w in .whl/*.whl; do unzip -q -o "$w" -d "$stage"; done
find "$stage" -type d \( -name tests -o -name __pycache__ \) -prune -exec rm -rf {} +
mkdir -p .gpu
tar -C "$stage" -cf - . | xz -9 -T0 > .gpu/site.tar.xz
rm -rf "$stage"
ls -la .gpu/site.tar.xz
