"""More than one generator replica, as users deploy it (`serve run` a shipped config, tiny model on CPU):
with `num_replicas: 2` two jobs generate at once, read from the job records (which replica, from when to
when), not from wall-clock thresholds; with configs/serve-autoscale.yaml a queue adds the second replica."""

import concurrent.futures as cf
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from devtools.procs import free_port, stop_service, wait_http

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
JOB = {"size": "128x128", "num_frames": 17, "num_inference_steps": 8}


def serve(config_name: str, work: Path, tiny_model_root, edit) -> tuple[subprocess.Popen, str, str]:
    config = yaml.safe_load((ROOT / "configs" / config_name).read_text())
    port = free_port()
    config["http_options"]["port"] = port
    edit(config["applications"][0])
    (work / "serve.yaml").write_text(yaml.safe_dump(config))
    ray_tmp = tempfile.mkdtemp(prefix="fwo-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "FASTWAN_TINY_MODEL_DIR": str(tiny_model_root),
           "FASTWAN_SELFCHECK": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "serve_app.launch", str(work / "serve.yaml")], cwd=work, env=env,
                            stdout=open(work / "log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}", ray_tmp


def run_jobs(base: str, n: int, job: dict = JOB) -> list[dict]:
    def one(i):
        job = httpx.post(f"{base}/v1/videos", timeout=30, json={"prompt": f"job {i}", "seed": i, **job_spec}).json()
        while job["status"] not in ("completed", "failed"):
            job = httpx.get(f"{base}/v1/videos/{job['id']}", headers={"Prefer": "wait=60"}, timeout=90).json()
        return job

    job_spec = job
    with cf.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def overlapping_pairs(jobs: list[dict]) -> list[tuple[str, str]]:
    """Pairs of jobs that generated at the same time on different replicas (from their records)."""
    spans = [(j["metrics"]["replica"], j["metrics"]["generation_started_at"], j["metrics"]["generation_ended_at"], j["id"])
             for j in jobs]
    return [(a[3], b[3]) for i, a in enumerate(spans) for b in spans[i + 1:]
            if a[0] != b[0] and a[1] < b[2] and b[1] < a[2]]


def test_two_generator_replicas_generate_at_once(tiny_model_root, tmp_path):
    def two_replicas(app):  # half a CPU each: a 2-core machine has room for both and the ingress
        app["deployments"].append({"name": "Generator", "num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5}})

    proc, base, ray_tmp = serve("serve.yaml", tmp_path, tiny_model_root, two_replicas)
    try:
        wait_http(f"{base}/ready", timeout_s=240)
        for _ in range(120):  # both replicas loaded (the second may still be loading when the first is ready)
            if httpx.get(f"{base}/ready", timeout=10).json()["generators"].get("ready") == 2:
                break
            time.sleep(0.5)
        jobs = run_jobs(base, 6)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        stop_service(proc, ray_tmp)
    assert all(j["status"] == "completed" for j in jobs), jobs
    assert len({j["metrics"]["replica"] for j in jobs}) == 2
    assert overlapping_pairs(jobs), [(j["metrics"]["replica"], j["metrics"]["generation_started_at"],
                                      j["metrics"]["generation_ended_at"]) for j in jobs]
    assert 'fastwan_generator_replicas{state="ready"} 2.0' in metrics
    assert 'fastwan_jobs_finished_total{code="",status="completed"} 6.0' in metrics


def test_a_queue_scales_the_generator_out(tiny_model_root, tmp_path):
    def fast_scaling(app):
        generator = next(d for d in app["deployments"] if d["name"] == "Generator")
        generator["autoscaling_config"].update(max_replicas=2, upscale_delay_s=1, downscale_delay_s=600,
                                               metrics_interval_s=0.5, look_back_period_s=2)
        generator["ray_actor_options"] = {"num_cpus": 0.5}

    proc, base, ray_tmp = serve("serve-autoscale.yaml", tmp_path, tiny_model_root, fast_scaling)
    try:
        wait_http(f"{base}/ready", timeout_s=240)
        assert httpx.get(f"{base}/ready", timeout=10).json()["generators"]["replicas"] == 1
        # a queue of 10 jobs of a few seconds each: the autoscaler adds a replica while it lasts
        jobs = run_jobs(base, 10, {"size": "256x256", "num_frames": 17, "num_inference_steps": 6})
        replicas = httpx.get(f"{base}/ready", timeout=10).json()["generators"]["replicas"]
    finally:
        stop_service(proc, ray_tmp)
    assert all(j["status"] == "completed" for j in jobs), jobs
    assert replicas == 2 and len({j["metrics"]["replica"] for j in jobs}) == 2


def test_replica_pools_are_deployed_side_by_side_and_both_take_jobs(tiny_model_root, tmp_path):
    """`replica_pools` (mixed widths; on a CPU every width is 1): one Generator deployment a pool, behind the
    one ingress, which spreads a burst over both by their expected finish (jobs/pools.py)."""
    def two_pools(app):
        app["args"]["replica_pools"] = [{"gpus_per_replica": 2, "num_replicas": 1},
                                        {"gpus_per_replica": 1, "num_replicas": 1}]
        app["deployments"] += [{"name": name, "ray_actor_options": {"num_cpus": 0.5}}
                               for name in ("Generator", "Generator-2")]

    proc, base, ray_tmp = serve("serve.yaml", tmp_path, tiny_model_root, two_pools)
    try:
        wait_http(f"{base}/ready", timeout_s=240)
        for _ in range(120):
            if httpx.get(f"{base}/ready", timeout=10).json()["generators"].get("ready") == 2:
                break
            time.sleep(0.5)
        jobs = run_jobs(base, 4)
        log = (tmp_path / "log").read_text(errors="replace")
    finally:
        stop_service(proc, ray_tmp)
    assert all(j["status"] == "completed" for j in jobs), jobs
    assert len({j["metrics"]["replica"] for j in jobs}) == 2, [j["metrics"]["replica"] for j in jobs]
    assert "generator pools (GPUs a replica x replicas)=[(1, 1), (1, 1)]" in log  # widths of 2 need a GPU
