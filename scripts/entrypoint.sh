#!/usr/bin/env bash
# FastWan Serve container entrypoint: a self-check block, then the service, then (WORKER_MODE=queue) Salad's
# job-queue worker once the model is ready. SIGTERM stops the queue worker first (no new jobs), then lets
# the service finish its running jobs (python -m serve_app.launch turns SIGTERM into Serve's graceful stop).
set -euo pipefail

CONFIG=${FASTWAN_CONFIG:-configs/serve.yaml}
MODE=${WORKER_MODE:-http}
READY_URL=${READY_URL:-http://127.0.0.1:8000/ready}
SALAD_QUEUE_WORKER=${SALAD_QUEUE_WORKER:-/usr/local/bin/salad-http-job-queue-worker}
PYTHON=${PYTHON:-python3}

case "$MODE" in
  http|queue|buffer) ;;
  *) echo "[entrypoint] WORKER_MODE must be http, queue or buffer, not '$MODE'" >&2; exit 2 ;;
esac
if [ "$MODE" = queue ] && [ ! -x "$SALAD_QUEUE_WORKER" ]; then
  echo "[entrypoint] WORKER_MODE=queue but $SALAD_QUEUE_WORKER is missing or not executable" >&2; exit 2
fi
if [ "$MODE" = buffer ] && [ -z "${ORCHESTRATOR_BASE_URL:-}" ]; then
  echo "[entrypoint] WORKER_MODE=buffer needs ORCHESTRATOR_BASE_URL" >&2; exit 2
fi

"$PYTHON" -m serve_app.selfcheck

"$PYTHON" -m serve_app.launch "$CONFIG" &
service=$!
worker=""

stop() {
  trap - TERM INT
  if [ -n "$worker" ]; then kill -TERM "$worker" 2>/dev/null || true; fi
  kill -TERM "$service" 2>/dev/null || true
  wait "$service" || true
  if [ -n "$worker" ]; then wait "$worker" 2>/dev/null || true; fi
  exit 0
}
trap stop TERM INT

if [ "$MODE" = queue ]; then
  # Salad's worker gives up on a job after a few connection errors: start it only once the model is ready.
  echo "[entrypoint] waiting for $READY_URL before starting the Salad job-queue worker"
  until "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "$READY_URL" 2>/dev/null; do
    if ! kill -0 "$service" 2>/dev/null; then echo "[entrypoint] the service exited" >&2; exit 1; fi
    sleep 2
  done
  "$SALAD_QUEUE_WORKER" &
  worker=$!
  echo "[entrypoint] Salad job-queue worker started (pid $worker)"
fi

# Whichever exits first ends the container, so the platform restarts it rather than leave half a worker.
set +e
if [ -n "$worker" ]; then wait -n "$service" "$worker"; else wait "$service"; fi
rc=$?
set -e
echo "[entrypoint] a process exited with $rc; stopping"
if [ -n "$worker" ]; then kill -TERM "$worker" 2>/dev/null || true; fi
kill -TERM "$service" 2>/dev/null || true
wait "$service" 2>/dev/null || true
exit "$rc"
