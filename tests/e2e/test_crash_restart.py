"""The whole service SIGKILLed again and again (every process: launcher, Ray, replicas), restarted on the same
storage each time: every accepted job ends completed once, and no marker or lease is left. The reported case
is in it: the second kill lands while the restarted service is adopting the first one's orphans."""

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from devtools.procs import kill_processes_mentioning, kill_session, wait_http
from tests.support.config import config_on_free_port

pytestmark = pytest.mark.e2e


class Service:
    """`python -m serve_app.launch` (the container's start command) that can be killed outright."""

    def __init__(self, config: Path, work: Path, env: dict, n: int):
        self.ray_tmp = tempfile.mkdtemp(prefix=f"fwc{n}-", dir="/tmp")
        self.log = work / f"service-{n}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "serve_app.launch", str(config)], cwd=work,
                                     env={**env, "RAY_TMPDIR": self.ray_tmp}, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        kill_session(self.proc.pid)  # the launcher, serve run, Ray and every replica, at once
        kill_processes_mentioning(self.ray_tmp)
        self.proc.wait(30)

    def says(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")


def test_repeated_hard_crashes_end_with_every_job_done_once(tiny_model_root, tmp_path):
    seed = int(os.environ.get("CRASH_SEED", time.time()))
    rng = random.Random(seed)
    print(f"CRASH_SEED={seed}")
    config, port = config_on_free_port(tmp_path)
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FASTWAN_TINY_MODEL_DIR": str(tiny_model_root), "FASTWAN_SELFCHECK": "false",
           "FASTWAN_STALE_AFTER_S": "3", "FASTWAN_RECOVERY_INTERVAL_S": "1", "FASTWAN_HEARTBEAT_S": "1",
           "FASTWAN_MAX_ATTEMPTS": "10", "FASTWAN_DEFAULT_WIDTH": "64", "FASTWAN_DEFAULT_HEIGHT": "64",
           "FASTWAN_DEFAULT_NUM_FRAMES": "9"}
    services = []
    try:
        first = Service(config, tmp_path, env, 1)
        services.append(first)
        wait_http(f"{base}/ready", timeout_s=240)
        ids = [httpx.post(f"{base}/v1/videos", timeout=30, json={
            "prompt": f"job {i}", "size": "128x128", "num_frames": 17, "num_inference_steps": 6}).json()["id"]
            for i in range(10)]
        time.sleep(rng.uniform(0.3, 2.0))  # somewhere in their run (about 0.5 s a job)
        first.kill()
        for n in (2, 3):  # killed while it adopts the orphans, at a random moment of that
            service = Service(config, tmp_path, env, n)
            services.append(service)
            deadline = time.monotonic() + 240
            while not service.says("adopting job"):
                assert time.monotonic() < deadline and service.proc.poll() is None, service.log.read_text()[-3000:]
                time.sleep(0.1)
            time.sleep(rng.uniform(0.0, 1.5))
            service.kill()
        last = Service(config, tmp_path, env, 4)
        services.append(last)
        wait_http(f"{base}/ready", timeout_s=240)
        deadline = time.monotonic() + 240
        while True:
            jobs = [httpx.get(f"{base}/v1/videos/{i}", timeout=10).json() for i in ids]
            if all(j["status"] in ("completed", "failed") for j in jobs) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert [j["status"] for j in jobs] == ["completed"] * 10, (seed, jobs)
        data = tmp_path / "data"
        deadline = time.monotonic() + 30  # the last markers go right after the last record
        while (list((data / "active").iterdir()) or list((data / "leases").rglob("*"))) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for service in services:
            if service.proc.poll() is None:
                service.kill()
    for i in ids:
        assert (data / "videos" / f"{i}.mp4").stat().st_size > 0
    assert list((data / "active").iterdir()) == [] and [p for p in (data / "leases").rglob("*") if p.is_file()] == []
    assert any(s.says("adopting job") for s in services[1:])
