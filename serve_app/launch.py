"""Start FastWan Serve as `serve run` does, but stop gracefully on SIGTERM (Docker, Salad, Vast.ai send it).

`serve run` shuts Serve down cleanly only on Ctrl-C (SIGINT); SIGTERM kills it at once (Ray's core
takes SIGTERM over), dropping running jobs. This launcher runs `serve run` as a child and turns SIGTERM
into SIGINT for it: Serve stops each replica gracefully, the ingress finishes its running jobs
(`drain_timeout_s`), and jobs still queued stay in storage for the next start to pick up.

    python -m serve_app.launch [configs/serve.yaml] [serve run options]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

SERVE_CLI = "import sys; from ray.serve.scripts import cli; sys.exit(cli())"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = argv[0] if argv else os.environ.get("FASTWAN_CONFIG", "configs/serve.yaml")
    # Ray sets OMP_NUM_THREADS=1 in every actor that reserves no CPU unless it is already set: FastVideo's
    # GPU worker is such an actor, and would prepare the model's weights on one CPU core.
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
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
