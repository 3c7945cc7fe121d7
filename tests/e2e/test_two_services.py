"""Two independent services (two containers on Salad: each its own Ray, sharing only object storage, here the
S3 test server): a job made on one is listed, read and downloaded on the other; an idempotency key holds
across both; and a job whose service dies outright is adopted by the other and finishes once."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from devtools.procs import kill_processes_mentioning, kill_session, wait_http
from serve_app.media.video import probe_mp4
from tests.conftest import BUCKET
from tests.support.config import config_on_free_port
from tests.support.polling import wait_for_status

pytestmark = pytest.mark.e2e


class Container:
    def __init__(self, name: str, work: Path, env: dict):
        work.mkdir()
        config, port = config_on_free_port(work)
        self.base = f"http://127.0.0.1:{port}"
        self.ray_tmp = tempfile.mkdtemp(prefix=f"fw2{name}-", dir="/tmp")
        self.proc = subprocess.Popen([sys.executable, "-m", "serve_app.launch", str(config)], cwd=work,
                                     env={**env, "RAY_TMPDIR": self.ray_tmp}, stdout=open(work / "log", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        kill_session(self.proc.pid)
        kill_processes_mentioning(self.ray_tmp)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def test_two_services_on_one_storage(tiny_model_root, s3_server, tmp_path):
    env = {**os.environ, "FASTWAN_TINY_MODEL_DIR": str(tiny_model_root), "FASTWAN_SELFCHECK": "false",
           "FASTWAN_STORAGE_URL": f"s3://{BUCKET}/two-services", "FASTWAN_S3_ENDPOINT_URL": s3_server.endpoint,
           "FASTWAN_S3_REGION": "us-east-1", "FASTWAN_STALE_AFTER_S": "3", "FASTWAN_HEARTBEAT_S": "1",
           "FASTWAN_RECOVERY_INTERVAL_S": "1", "FASTWAN_DEFAULT_WIDTH": "64", "FASTWAN_DEFAULT_HEIGHT": "64",
           "FASTWAN_DEFAULT_NUM_FRAMES": "9"}
    a, b = Container("a", tmp_path / "a", env), Container("b", tmp_path / "b", env)
    try:
        wait_http(f"{a.base}/ready", timeout_s=240)
        wait_http(f"{b.base}/ready", timeout_s=240)
        # made on A, seen and fetched on B
        made = httpx.post(f"{a.base}/v1/videos", timeout=60, headers={"Prefer": "wait=50"},
                          json={"prompt": "made on a", "seed": 7}).json()
        assert made["status"] == "completed"
        assert made["id"] in [v["id"] for v in httpx.get(f"{b.base}/v1/videos", timeout=10).json()["data"]]
        assert httpx.get(f"{b.base}/v1/videos/{made['id']}", timeout=10).json()["seed"] == 7
        content = httpx.get(f"{b.base}/v1/videos/{made['id']}/content", timeout=30, follow_redirects=True)
        assert content.status_code == 200 and probe_mp4(content.content, decode=False)[0].num_frames == 9
        # one idempotency key, two services
        body, key = {"prompt": "once only", "seed": 3}, {"Idempotency-Key": "order-42"}
        first = httpx.post(f"{a.base}/v1/videos", timeout=30, json=body, headers=key).json()
        again = httpx.post(f"{b.base}/v1/videos", timeout=30, json=body, headers=key).json()
        assert again["id"] == first["id"]
        clash = httpx.post(f"{b.base}/v1/videos", timeout=30, json={**body, "seed": 4}, headers=key)
        assert clash.status_code == 409
        # A dies with a job on its generator; B adopts it
        orphan = httpx.post(f"{a.base}/v1/videos", timeout=30, json={
            "prompt": "orphaned", "size": "256x256", "num_frames": 17, "num_inference_steps": 30}).json()
        wait_for_status(a.base, orphan["id"], "in_progress")
        a.kill()
        deadline = time.monotonic() + 240
        while (job := httpx.get(f"{b.base}/v1/videos/{orphan['id']}", timeout=10).json())["status"] not in (
                "completed", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
    finally:
        a.stop()
        b.stop()
    assert job["status"] == "completed", job
    s3 = s3_server.client()
    record = s3.get_object(Bucket=BUCKET, Key=f"two-services/jobs/{orphan['id']}.json")["Body"].read()
    assert b'"attempts":2' in record  # run once on A (lost with it), once on B
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="two-services/")["Contents"]]
    assert keys.count(f"two-services/videos/{orphan['id']}.mp4") == 1
    assert not [k for k in keys if k.startswith(("two-services/active/", "two-services/leases/"))]
