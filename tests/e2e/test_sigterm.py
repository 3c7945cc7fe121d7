"""SIGTERM (what Docker and Salad send) lets a running job finish before the service exits."""

import json
import os
import signal
import subprocess
import sys
import tempfile

import httpx
import pytest

from devtools.procs import kill_processes_mentioning, wait_http
from tests.support.config import config_on_free_port
from tests.support.polling import wait_for_status

pytestmark = pytest.mark.e2e


def test_sigterm_drains_running_jobs(tiny_model_root, tmp_path):
    config_path, port = config_on_free_port(tmp_path)
    ray_tmp = tempfile.mkdtemp(prefix="fws-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "FASTWAN_TINY_MODEL_DIR": str(tiny_model_root),
           "FASTWAN_SELFCHECK": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "serve_app.launch", str(config_path)], cwd=tmp_path,
                            env=env, stdout=open(tmp_path / "log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/ready", timeout_s=240)
        job = httpx.post(f"{base}/v1/videos", timeout=30, json={
            "prompt": "a long one", "size": "256x256", "num_frames": 17, "num_inference_steps": 12}).json()
        wait_for_status(base, job["id"], "in_progress", every_s=0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) is not None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        kill_processes_mentioning(ray_tmp)
    record = json.loads((tmp_path / "data" / "jobs" / f"{job['id']}.json").read_text())
    assert record["status"] == "completed", (record, (tmp_path / "log").read_text()[-3000:])
    assert (tmp_path / "data" / "videos" / f"{job['id']}.mp4").stat().st_size > 0
    assert not (tmp_path / "data" / "active" / job["id"]).exists()
