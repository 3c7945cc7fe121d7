#!/usr/bin/env bash
# The GPU check, in one call on the GPU machine (see docs/gpu.md):
#   bash scripts/gpu_check.sh                    # tiny model: backend tests, Serve over HTTP, ray vs mp timing
#   bash scripts/gpu_check.sh "tiny full" "variants cap32" "--n 2"   # + full-size model: bench/gpu_bench.py modes
#   bash scripts/gpu_check.sh vae                # the full-size VAE decode variants alone (bench/vae_decode.py)
#   bash scripts/gpu_check.sh startup            # Ray and Serve's own start (bench/ray_start.py)
#   bash scripts/gpu_check.sh dit                # one full-size DiT forward alone, profiled (bench/dit_step.py)
#   bash scripts/gpu_check.sh noise              # the initial noise's draw, stock and ahead (bench/noise_draw.py)
# First argument: sections (startup, dit, noise, tiny, conv, vae, encode, full); for full, the bench modes and extra bench arguments.
# Knobs: SKIP_TESTS, GPU_TESTS (pytest paths), SKIP_SERVE, SKIP_RAY_VS_MP (tiny steps), RAY_VS_MP_N, EXECUTORS, VAE_VARIANTS, VAE_N, VAE_PASSES, VAE_SIZES, VAE_ARGS,
# *_TIMEOUT.
# Everything that touches the GPU runs inside scripts/box.sh (private IPC namespace, 64 MiB /dev/shm),
# the way a container without --ipc=host sees the machine. Logs and results go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" /tmp/site /tmp/m
if [ -f .gpu/site.tar.xz ] && [ ! -d /tmp/site/fastvideo ]; then
  tar -C /tmp/site -xJf .gpu/site.tar.xz
  # This machine sets PYTHONDONTWRITEBYTECODE=1, so every process would compile these packages from source
  # (run 13: Ray's import 3.3 -> 1.5 s once compiled); pip writes the bytecode when it installs a wheel.
  python3 -m compileall -q -j 0 /tmp/site > /dev/null
fi
export PYTHONPATH=/tmp/site:$PWD RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
export FASTVIDEO_ATTENTION_BACKEND=${FASTVIDEO_ATTENTION_BACKEND:-TORCH_SDPA} RAY_TMPDIR=/tmp/rt
export FASTWAN_TEST_TINY_DIR=/tmp/m/tiny
# fewer out-of-memory errors from fragmentation (what the container sets too; see docs/deploy)
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
mkdir -p "$RAY_TMPDIR"
declare -A status

step() {  # step NAME TIMEOUT CMD...: run, log to $OUT/NAME.log, remember pass/fail (STEP_SIGNAL: what ends it)
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  # -k: a process that ignores the signal is killed 15 s later (run 44's tests ignored SIGTERM for 6 minutes)
  timeout -s "${STEP_SIGNAL:-TERM}" -k 15 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  status[$name]="rc=$rc $((SECONDS - start))s"
  echo "== $name: rc=$rc in $((SECONDS - start)) s"; tail -n 25 "$OUT/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -V
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"; df -h /dev/shm | tail -1
  python3 -c "import sys, os; print('dont_write_bytecode', sys.flags.dont_write_bytecode, 'cpus', os.cpu_count())"
  find /tmp/site -name '*.pyc' | wc -l | sed 's/^/pyc files in \/tmp\/site: /'
  # a warm machine keeps an earlier call's processes: any still on the GPU are named here
  nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader | sed 's/^/on the GPU already: /'; } \
  > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
SECTIONS=${1:-tiny}
if [[ " $SECTIONS " == *" startup "* ]]; then
  step ray_start "${STARTUP_TIMEOUT:-200}" scripts/box.sh python3 bench/ray_start.py
fi
if [[ " $SECTIONS " == *" dit "* ]]; then  # the DiT's forward alone: attention outside/inside the compiled blocks
  step dit_step "${DIT_TIMEOUT:-300}" python3 bench/dit_step.py --out "$OUT" ${DIT_ARGS:-}
fi
if [[ " $SECTIONS " == *" noise "* ]]; then  # the initial noise's draw: FastVideo's stage, and drawn ahead
  step noise_draw "${NOISE_TIMEOUT:-120}" scripts/box.sh python3 bench/noise_draw.py --out "$OUT"
fi
if [[ " $SECTIONS " == *" tiny "* ]]; then
  step tiny_model 120 python3 -m serve_app.models.tiny --out /tmp/m/tiny
  if [ -z "${SKIP_TESTS:-}" ]; then
    # SIGINT at the time limit: pytest then still prints the failures so far (SIGTERM lost them in run 44); each
    # test at most TEST_EACH_TIMEOUT s where pytest-timeout is installed; tests/gpu (Ray, the GPU in its workers)
    # and tests/fastvideo (CUDA in the test process) in processes of their own unless GPU_TESTS names what to run
    each=(); python3 -c "import pytest_timeout" 2> /dev/null && each=(--timeout "${TEST_EACH_TIMEOUT:-300}")
    # (the handler set explicitly: a command started in the background begins with SIGINT ignored)
    pytest_gpu() { STEP_SIGNAL=INT step "$1" "${TESTS_TIMEOUT:-240}" scripts/box.sh python3 -c "import signal, sys, pytest
signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(pytest.main(sys.argv[1:]))" \
      -v -rfE --tb=short --durations=15 -p no:cacheprovider -o addopts="" "${each[@]}" "${@:2}"; }
    if [ -n "${GPU_TESTS:-}" ]; then pytest_gpu backend_tests $GPU_TESTS
    else pytest_gpu backend_tests tests/gpu; pytest_gpu fastvideo_tests tests/fastvideo; fi
  fi
  [ -n "${SKIP_SERVE:-}" ] || step serve_http "${SERVE_TIMEOUT:-270}" scripts/box.sh python3 scripts/gpu_serve_check.py --model tiny \
    --tiny-dir /tmp/m/tiny --out "$OUT" --ready-timeout 200
  [ -n "${SKIP_RAY_VS_MP:-}" ] || step ray_vs_mp "${RAY_VS_MP_TIMEOUT:-300}" scripts/box.sh python3 bench/ray_vs_mp.py --model tiny --tiny-dir /tmp/m/tiny \
    --size 1280x704 --frames 121 --n "${RAY_VS_MP_N:-3}" --executors "${EXECUTORS:-ray mp}" --out "$OUT"
fi
if [[ " $SECTIONS " == *" conv "* ]]; then  # the VAE's causal convs alone: conv3d against 2D convs (bench/vae_conv.py)
  step vae_conv "${CONV_TIMEOUT:-200}" python3 bench/vae_conv.py --out "$OUT"
fi
if [[ " $SECTIONS " == *" vae "* ]]; then
  export TORCHINDUCTOR_CACHE_DIR=/tmp/vae-cc  # VAE_PASSES=2: a second process with the first one's compile cache
  for pass in $(seq "${VAE_PASSES:-1}"); do
    for size in ${VAE_SIZES:-1280x704}; do  # "672x704 848x704 1280x704": one GPU's band of a split decode
      tag="-$pass"; [ "$size" = 1280x704 ] || tag="-$pass-$size"
      step "vae_decode$tag" "${VAE_TIMEOUT:-400}" python3 bench/vae_decode.py --n "${VAE_N:-2}" --profile --out "$OUT" \
        --tag="$tag" --size "$size" ${VAE_ARGS:-} --variants "${VAE_VARIANTS:-fp32 stock upsample padding fused all stream}"
    done
  done
  unset TORCHINDUCTOR_CACHE_DIR
fi
if [[ " $SECTIONS " == *" encode "* ]]; then  # the MP4 encode alone, by content and preset (the fast profile's tail)
  step mp4_encode "${ENCODE_TIMEOUT:-200}" python3 bench/mp4_encode.py --out "$OUT"
fi
if [[ " $SECTIONS " == *" full "* ]]; then
  if [ -f /tmp/full/.built ]; then echo "== full_model: kept from this machine's earlier call"; else  # a warm machine
    step full_model 300 python3 -m serve_app.models.full --out /tmp/full
    [ "${status[full_model]%% *}" = rc=0 ] && touch /tmp/full/.built
  fi
  step light_decoder 60 python3 -m serve_app.models.light_decoder --out /tmp/light-decoder.pth
  step bench "${FULL_TIMEOUT:-560}" python3 bench/gpu_bench.py --model-dir /tmp/full/FastWan2.2-TI2V-5B-Diffusers --out "$OUT" \
    ${3:-} ${2:-bare variants cap32}
  python3 bench/gpu_bench.py --out "$OUT" report
fi

# only 8 files come back from the GPU machine: fold logs, JSON and profiles into one archive
(cd "$OUT" && ls *.log *.json *.txt 2>/dev/null | grep -v machine.txt | tar -cJf results.tar.xz -T - \
  && ls *.log *.json *.txt | grep -v machine.txt | xargs rm -f)
echo; echo "== summary"; cat "$OUT/machine.txt"
for name in "${!status[@]}"; do echo "$name: ${status[$name]}"; done
[ -f "$OUT/ray_vs_mp.md" ] && cat "$OUT/ray_vs_mp.md"
[ -f "$OUT/gpu_bench.md" ] && cat "$OUT/gpu_bench.md"
cat "$OUT"/vae_decode-*.md "$OUT"/vae_conv.md "$OUT"/dit_step.md "$OUT"/noise_draw.md 2>/dev/null
