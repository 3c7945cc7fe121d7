"""Start FastWan Serve as `serve run` does, but stop gracefully on SIGTERM (Docker, Salad, Vast.ai send it).

`serve run` shuts Serve down cleanly only on Ctrl-C (SIGINT); SIGTERM kills it at once (Ray's core
takes SIGTERM over), dropping running jobs. This launcher runs `serve run` as a child and turns SIGTERM
into SIGINT for it: Serve stops each replica gracefully, the ingress finishes its running jobs
(`drain_timeout_s`), and jobs still queued stay in storage for the next start to pick up.

    python -m serve_app.launch [configs/serve.yaml] [serve run options]
    python -m serve_app.launch configs/serve.yaml --until-ready   # start, warm up, stop: fills the compile cache
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

SERVE_CLI = "import sys; from ray.serve.scripts import cli; sys.exit(cli())"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    until_ready = "--until-ready" in argv
    argv = [a for a in argv if a != "--until-ready"]
    config = argv[0] if argv else os.environ.get("FASTWAN_CONFIG", "configs/serve.yaml")
    # Ray sets OMP_NUM_THREADS=1 in every actor that reserves no CPU unless it is already set: FastVideo's GPU
    # worker is such an actor, and would prepare the model's weights on one CPU core.
    env = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "OMP_NUM_THREADS": str(len(os.sched_getaffinity(0))), **os.environ}
    # A shell starts background jobs with SIGINT ignored, and a Python started that way never raises
    # KeyboardInterrupt: give the child the default SIGINT disposition back.
    child = subprocess.Popen([sys.executable, "-c", SERVE_CLI, "run", config, *argv[1:]], env=env,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def forward(signum, frame):
        child.send_signal(signal.SIGINT)  # serve run's graceful path

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if until_ready:
        return stop_once_ready(child, config)
    return child.wait()


def stop_once_ready(child: subprocess.Popen, config: str) -> int:
    """Wait for /ready (which turns 200 after the warm-up), then stop gracefully: the compile cache is filled."""
    import yaml

    with open(config) as f:
        port = (yaml.safe_load(f).get("http_options") or {}).get("port", 8000)
    while child.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
                if resp.status == 200:
                    print("[launch] ready (warmed up); stopping", flush=True)
                    child.send_signal(signal.SIGINT)
                    child.wait()
                    return 0
        except OSError:
            pass
        time.sleep(2)
    return child.returncode or 1


if __name__ == "__main__":
    sys.exit(main())
