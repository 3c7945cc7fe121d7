"""On a GPU machine: `serve run` the shipped configs/serve.yaml (backend auto -> fastvideo, Ray executor),
send real HTTP requests (text-to-video and image-to-video), and check the MP4s that come back.

    python scripts/gpu_serve_check.py --model tiny --tiny-dir /tmp/m/tiny [--out DIR]

Run it inside scripts/box.sh to check the container case (private IPC namespace, 64 MiB /dev/shm).
Exit status 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serve_app.media.video import probe_mp4  # noqa: E402
from serve_app.media.images import solid_png  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--tiny-dir", default="models/tiny")
    parser.add_argument("--size", default="256x128")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--ready-timeout", type=float, default=300)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-serve-"))
    config = yaml.safe_load((ROOT / "configs/serve.yaml").read_text())
    app = config["applications"][0]
    app["args"].update(model=args.model, tiny_model_dir=args.tiny_dir, storage_url=f"file://{work}/data")
    (work / "serve.yaml").write_text(yaml.safe_dump(config))
    port = config["http_options"]["port"]
    base = f"http://127.0.0.1:{port}"
    env = {"FASTVIDEO_ATTENTION_BACKEND": "TORCH_SDPA", **os.environ,  # Ray's workers inherit the launcher's env
           "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": tempfile.mkdtemp(prefix="gsr-", dir="/tmp"),
           "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    log = open(out / "serve_run.log", "wb")
    cmd = [sys.executable, "-m", "serve_app.launch", str(work / "serve.yaml")]  # what the container runs
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    checks: dict[str, object] = {}
    try:
        ready = wait_ready(base, proc, timeout_s=args.ready_timeout)
        checks["cold_start_s"] = round(time.perf_counter() - started, 1)
        checks["ready"] = ready
        w, h = (int(x) for x in args.size.split("x"))
        t2v = httpx.post(f"{base}/v1/videos", json={"prompt": "a cat on a beach", "size": args.size,
                                                   "num_frames": args.frames, "seed": 7},
                         headers={"Prefer": "wait=300"}, timeout=320).json()
        checks["t2v"] = verify(base, t2v, args.frames, w, h)
        image = "data:image/png;base64," + base64.b64encode(solid_png(w, h, (220, 30, 30))).decode()
        i2v = httpx.post(f"{base}/v1/videos", json={"prompt": "a cat on a beach", "size": args.size,
                                                   "num_frames": args.frames, "seed": 7, "input_reference": image},
                         headers={"Prefer": "wait=300"}, timeout=320).json()
        checks["i2v"] = verify(base, i2v, args.frames, w, h)
        old = httpx.post(f"{base}/generate", json={"musetalk_job_id": "gpu-1", "prompt": "a person talking",
                                                  "num_frames": args.frames, "width": w, "height": h, "seed": 42},
                         timeout=320).json()
        checks["generate"] = {"status": old["status"], "metrics": old.get("metrics"), "error": old.get("error")}
        checks["health"] = httpx.get(f"{base}/health", timeout=10).json()
        checks["ready_after"] = httpx.get(f"{base}/ready", timeout=10).json()  # the warm-up's outcome
    except Exception as exc:  # noqa: BLE001 - reported in the summary
        checks["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    warmup = checks.get("ready_after", {}).get("generator", {}).get("warmup")
    # the GPU worker started ahead of the replica's imports is the one FastVideo's executor runs on
    prestart = checks.get("ready", {}).get("generator", {}).get("info", {}).get("details", {}).get("prestarted_worker")
    checks["prestarted_worker"] = prestart
    ok = ("error" not in checks and prestart == "adopted" and checks.get("t2v", {}).get("ok")
          and checks.get("i2v", {}).get("ok") and checks.get("generate", {}).get("status") == "succeeded"
          and warmup in ("done", "off"))
    checks["ok"] = bool(ok)
    (out / "serve_check.json").write_text(json.dumps(checks, indent=2, default=str))
    print(json.dumps(checks, indent=2, default=str)[-4000:])
    return 0 if ok else 1


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float) -> dict:
    """Until /ready is 200; gives up early if `serve run` exits or the generator keeps failing for 2 minutes."""
    deadline, failing_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve run exited with {proc.returncode}")
        try:
            resp = httpx.get(f"{base}/ready", timeout=10)
            body = resp.json()
            if resp.status_code == 200:
                return body
            if body.get("generator", {}).get("state") == "failed":
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > 120:
                    raise RuntimeError(f"generator keeps failing: {body.get('reason')}")
            else:
                failing_since = None
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(2)
    raise TimeoutError(f"{base}/ready not ready after {timeout_s} s")


def verify(base: str, job: dict, frames: int, width: int, height: int) -> dict:
    result = {"status": job.get("status"), "error": job.get("error"), "metrics": job.get("metrics")}
    if job.get("status") != "completed":
        result["ok"] = False
        return result
    data = httpx.get(f"{base}/v1/videos/{job['id']}/content", timeout=60, follow_redirects=True).content
    probe, decoded = probe_mp4(data)
    result.update(probe=probe.model_dump(), std=float(decoded.std()))
    result["ok"] = (probe.num_frames, probe.width, probe.height, probe.codec) == (frames, width, height, "h264")
    return result


if __name__ == "__main__":
    raise SystemExit(main())
