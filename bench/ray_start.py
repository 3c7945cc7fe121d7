"""What Ray and Serve cost before the app's own code runs: import, `ray.init`, `serve.start`, the first task
and actor (in a prestarted worker and in one started for a runtime_env), with and without the dashboard.

Each variant runs in its own process (a fresh local Ray). Prints one JSON line per variant.

    python bench/ray_start.py [--variants dashboard no-dashboard]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

VARIANTS = {"dashboard": True, "no-dashboard": False}


def measure(include_dashboard: bool) -> dict:
    t0 = time.perf_counter()
    out: dict = {}

    def mark(name: str) -> None:
        out[name] = round(time.perf_counter() - t0 - sum(out.values()), 2)

    import ray
    from ray import serve

    mark("import_s")
    ray.init(namespace="serve", include_dashboard=include_dashboard,
             _temp_dir=tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    mark("ray_init_s")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    mark("serve_start_s")

    @ray.remote(num_cpus=0)
    def pid() -> int:
        return os.getpid()

    @ray.remote(num_cpus=0)
    class Actor:
        def pid(self) -> int:
            return os.getpid()

    ray.get(pid.remote())
    mark("first_task_s")
    ray.get(pid.options(runtime_env={"env_vars": {"FASTWAN_PROBE": "1"}}).remote())
    mark("task_with_env_vars_s")
    ray.get(Actor.remote().pid.remote())
    mark("actor_s")
    ray.get(Actor.options(runtime_env={"env_vars": {"FASTWAN_PROBE": "2"}}).remote().pid.remote())
    mark("actor_with_env_vars_s")
    serve.shutdown()
    ray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps({"variant": args.one, **measure(VARIANTS[args.one])}), flush=True)
        return
    for variant in args.variants:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        done = subprocess.run([sys.executable, __file__, "--one", variant], env=env, capture_output=True, text=True,
                              timeout=300)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        print(lines[-1] if lines else f"{variant}: rc={done.returncode} {done.stderr[-1500:]}", flush=True)


if __name__ == "__main__":
    main()
