"""Service overhead and throughput on the tiny model, all in one run (CPU is fine).

1. Direct: the diffusers backend called in-process (the baseline).
2. Service: the real Serve app over HTTP. Latency of POST /generate (submit -> generated -> MP4 encoded
   -> object stored -> response) and of POST /v1/videos + polling, at concurrency 1.
3. Throughput: jobs/s at concurrency 1, 4, 8 with batching on (max_batch_size 8) and off (1).

    python bench/service_overhead.py [--size 64x64 --frames 9 --steps 3 --n 20] [--write-docs]

Prints a markdown table; --write-docs puts it in docs/benchmarks.md between the service-overhead markers.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import httpx  # noqa: E402

from devtools.procs import free_port, kill_processes_mentioning# noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def direct_latency(tiny_root: Path, params, n: int) -> list[float]:
    from serve_app.backends import create_backend
    from serve_app.settings import Settings

    backend = create_backend(Settings(model="tiny", tiny_model_dir=tiny_root).resolve(gpus=0))
    backend.load()
    backend.generate([params], lambda *_: None)  # warm-up
    times = []
    for _ in range(n):
        start = time.perf_counter()
        backend.generate([params], lambda *_: None)
        times.append(time.perf_counter() - start)
    backend.close()
    return times


def deploy(tiny_root: Path, storage: str, batch: int):
    from ray import serve

    from serve_app.app import build_app

    args = dict(model="tiny", tiny_model_dir=str(tiny_root), storage_url=storage, max_batch_size=batch,
                batch_wait_timeout_s=0.0, selfcheck=True)
    serve.run(build_app(args), name="fastwan", route_prefix="/")


def generate_body(args, seed):
    w, h = args.size.split("x")
    return {"prompt": f"a dog running {seed}", "width": int(w), "height": int(h), "num_frames": args.frames,
            "steps": args.steps, "seed": seed, "guidance_scale": 1.0}


def sync_latency(base, args, n):
    times = []
    with httpx.Client(timeout=300) as client:
        client.post(f"{base}/generate", json=generate_body(args, 0))  # warm-up
        for i in range(n):
            start = time.perf_counter()
            resp = client.post(f"{base}/generate", json=generate_body(args, i))
            times.append(time.perf_counter() - start)
            assert resp.json()["status"] == "succeeded", resp.text
    return times


def async_latency(base, args, n):
    """POST /v1/videos, then GET with `Prefer: wait` (a long poll: no polling interval in the figure)."""
    times = []
    body = {"prompt": "a cat", "size": args.size, "num_frames": args.frames, "num_inference_steps": args.steps,
            "fps": 24}
    with httpx.Client(timeout=300) as client:
        for i in range(n):
            start = time.perf_counter()
            vid = client.post(f"{base}/v1/videos", json={**body, "seed": i}).json()["id"]
            job = client.get(f"{base}/v1/videos/{vid}", headers={"Prefer": "wait=60"}).json()
            times.append(time.perf_counter() - start)
            assert job["status"] == "completed", job
    return times


def throughput(base, args, concurrency, jobs):
    def one(i):
        with httpx.Client(timeout=600) as client:
            resp = client.post(f"{base}/generate", json=generate_body(args, 1000 + i)).json()
            assert resp["status"] == "succeeded", resp
    start = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(jobs)))
    return jobs / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="64x64")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--n", type=int, default=20, help="latency samples")
    parser.add_argument("--jobs", type=int, default=16, help="jobs per throughput point")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    import ray
    from ray import serve

    from serve_app.contracts import GenerationParams
    from serve_app.models.tiny import ensure

    work = Path(tempfile.mkdtemp(prefix="fwbench-"))
    tiny_root = ROOT / "models" / "tiny"
    ensure(tiny_root)
    w, h = (int(x) for x in args.size.split("x"))
    params = GenerationParams(prompt="a dog running", width=w, height=h, num_frames=args.frames, fps=24,
                              num_inference_steps=args.steps, guidance_scale=1.0, seed=1)
    direct = direct_latency(tiny_root, params, args.n)

    ray_tmp = tempfile.mkdtemp(prefix="fwb-", dir="/tmp")
    port = free_port()
    results = {"direct": direct}
    ray.init(include_dashboard=False, _temp_dir=ray_tmp, namespace="serve")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        base = f"http://127.0.0.1:{port}"
        storage = f"file://{work}/data"
        deploy(tiny_root, storage, batch=8)
        results["sync"] = sync_latency(base, args, args.n)
        results["async"] = async_latency(base, args, args.n)
        tput = {}
        for batch in (8, 1):
            deploy(tiny_root, storage, batch=batch)
            throughput(base, args, 2, 2)  # warm-up
            for conc in (1, 4, 8):
                tput[(batch, conc)] = throughput(base, args, conc, args.jobs)
        serve.shutdown()
    finally:
        ray.shutdown()
        kill_processes_mentioning(ray_tmp)

    p50 = {k: statistics.median(v) for k, v in results.items()}
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    lines = [
        f"Machine: {platform.node()} ({cpu}), Python {platform.python_version()}; tiny model, diffusers backend "
        f"on CPU, {args.size}x{args.frames} frames, {args.steps} steps, local-file storage.",
        f"Command: `python bench/service_overhead.py --size {args.size} --frames {args.frames} "
        f"--steps {args.steps} --n {args.n} --jobs {args.jobs}` ({time.strftime('%Y-%m-%d')})",
        "",
        "| path | p50 ms | p90 ms | overhead over direct (p50) |",
        "|---|---|---|---|",
        f"| direct backend call (baseline) | {p50['direct'] * 1e3:.0f} | {pct(direct, 90) * 1e3:.0f} | - |",
        f"| service: POST /generate (sync) | {p50['sync'] * 1e3:.0f} | {pct(results['sync'], 90) * 1e3:.0f} | "
        f"{(p50['sync'] - p50['direct']) * 1e3:+.0f} ms |",
        f"| service: POST /v1/videos, then GET with Prefer: wait | {p50['async'] * 1e3:.0f} | "
        f"{pct(results['async'], 90) * 1e3:.0f} | {(p50['async'] - p50['direct']) * 1e3:+.0f} ms |",
        "",
        "| throughput (videos/s) | concurrency 1 | concurrency 4 | concurrency 8 |",
        "|---|---|---|---|",
        "| batching on (max_batch_size 8, wait 0) | "
        + " | ".join(f"{tput[(8, c)]:.2f}" for c in (1, 4, 8)) + " |",
        "| batching off (max_batch_size 1) | " + " | ".join(f"{tput[(1, c)]:.2f}" for c in (1, 4, 8)) + " |",
    ]
    table = "\n".join(lines)
    print(table)
    print(json.dumps({k: [round(x, 4) for x in v] for k, v in results.items()}))
    if args.write_docs:
        write_section(ROOT / "docs" / "benchmarks.md", "service-overhead", table)


def write_section(path: Path, name: str, body: str) -> None:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text()
    start, stop = text.index(begin) + len(begin), text.index(end)
    path.write_text(text[:start] + "\n" + body + "\n" + text[stop:])


if __name__ == "__main__":
    main()
