"""FastVideo executor parity: the same backend call with the Ray executor and the mp executor, same run, same card.

Each executor runs in its own child process (a clean GPU for each): load the backend, one warm-up
video, then --n timed videos; the time is `backend.generate()` wall clock, uint8 frames in hand.

    python bench/ray_vs_mp.py --model tiny --size 1280x704 --frames 121 --n 3 [--out DIR]

Run it inside scripts/box.sh to see what a container without --ipc=host sees.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one(executor: str, args) -> dict:
    import ray

    from serve_app.backends import create_backend
    from serve_app.contracts import GenerationParams
    from serve_app.settings import Settings

    if executor.startswith("ray"):
        ray.init(include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="fwb-", dir="/tmp"))
    settings = Settings(backend="fastvideo", model=args.model, tiny_model_dir=args.tiny_dir, device="cuda",
                        fastvideo_executor=executor.split("+")[0].split("-")[0],
                        encode_in_worker=executor.endswith("+mp4")).resolve(gpus=1)
    start = time.perf_counter()
    backend = create_backend(settings)
    backend.load()
    load_s = time.perf_counter() - start
    w, h = (int(x) for x in args.size.split("x"))

    def run(seed):
        p = GenerationParams(prompt="a dog running on a beach", width=w, height=h, num_frames=args.frames, fps=24,
                             num_inference_steps=3, guidance_scale=1.0, seed=seed)
        t = time.perf_counter()
        video = backend.generate([p], lambda *_: None)[0]
        assert video.size == (args.frames, h, w)
        return time.perf_counter() - t, video

    run(0)
    times, peaks, stages = [], [], []
    for seed in range(1, args.n + 1):
        seconds, video = run(seed)
        times.append(seconds)
        peaks.append(video.peak_vram_gb or 0)
        stages.append(video.stages)
    backend.close()
    return {"executor": executor, "load_s": round(load_s, 1), "times": [round(t, 3) for t in times],
            "median_s": round(statistics.median(times), 3), "peak_vram_gb": max(peaks), "stages": stages[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--tiny-dir", default="models/tiny")
    parser.add_argument("--size", default="1280x704")
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--executors", default="ray mp",
                        help="ray, mp, ray-inline (Ray returns objects up to 512 MB inline, not via plasma); "
                             "ray+mp4: encodes in the worker while decoding (the service's default)")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(args.one, args)), flush=True)
        os._exit(0)  # skip FastVideo's destructors, which try to restart Ray at interpreter exit
    results = {}
    for executor in args.executors.split():
        cmd = [sys.executable, __file__, "--one", executor, "--model", args.model, "--tiny-dir", args.tiny_dir,
               "--size", args.size, "--frames", str(args.frames), "--n", str(args.n)]
        env = {**os.environ, **({"RAY_max_direct_call_object_size": str(512 * 2**20)} if "inline" in executor else {})}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-3000:], proc.stderr[-5000:])
            raise SystemExit(f"{executor} run failed")
        results[executor] = json.loads(line[len("RESULT "):])
        print(executor, json.dumps(results[executor]), flush=True)  # partial results survive a timeout
    ratios = {f"{r} / {m}": results[r]["median_s"] / results[m]["median_s"]
              for r, m in (("ray", "mp"), ("ray-inline", "mp"), ("ray+mp4", "mp")) if r in results and m in results}
    import torch

    card = torch.cuda.get_device_name(0)
    table = "\n".join([
        f"Card: {card}; model: {args.model}; {args.size}x{args.frames} frames; {args.n} timed videos per executor "
        f"after one warm-up; shm: {shm_size()}.",
        f"Command: `python bench/ray_vs_mp.py --model {args.model} --size {args.size} --frames {args.frames} "
        f"--n {args.n} --executors '{args.executors}'` ({time.strftime('%Y-%m-%d')}); "
        "`+mp4`: the MP4 is encoded in the GPU worker while the VAE decodes (the service's default), "
        "otherwise uint8 frames in hand",
        "",
        "| executor | load s | per video s (median) | all runs s | peak GPU GB |",
        "|---|---|---|---|---|",
        *(f"| {e} | {r['load_s']} | {r['median_s']} | {r['times']} | {r['peak_vram_gb']} |"
          for e, r in results.items()),
        *(f"| **{name}** | | **{ratio:.3f}** | | |" for name, ratio in ratios.items()),
        "",
        "Stages of the last timed video (s): " + "; ".join(
            f"{e}: " + ", ".join(f"{k} {v}" for k, v in r["stages"].items() if k.startswith(("worker", "rpc", "encode",
                                                                                            "decod", "denois")))
            for e, r in results.items()),
    ])
    print(table)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "ray_vs_mp.md").write_text(table + "\n")
    (Path(args.out) / "ray_vs_mp.json").write_text(json.dumps(results, indent=2))


def shm_size() -> str:
    stat = os.statvfs("/dev/shm")
    return f"/dev/shm {stat.f_blocks * stat.f_frsize / 2**20:.0f} MiB"


if __name__ == "__main__":
    main()
