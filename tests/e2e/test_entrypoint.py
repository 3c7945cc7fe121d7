"""The container entrypoint, outside Docker: self-check block, service start, WORKER_MODE=queue with a
stand-in for Salad's job-queue worker (started only once /ready is 200), Salad's retry rules on /generate,
and a clean stop on SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from devtools.procs import kill_processes_mentioning
from tests.support.config import config_on_free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_entrypoint_queue_mode(tiny_model_root, tmp_path):
    config_path, port = config_on_free_port(tmp_path)
    job = {"prompt": "a person talking", "num_frames": 9, "width": 64, "height": 64, "steps": 2, "seed": 1}
    jobs = [["salad-1", job], ["salad-bad", {**job, "prompt": ""}], ["salad-1", job]]  # the last: a retry
    ray_tmp = tempfile.mkdtemp(prefix="fwq-", dir="/tmp")
    env = {**os.environ, "FASTWAN_CONFIG": str(config_path), "WORKER_MODE": "queue",
           "READY_URL": f"http://127.0.0.1:{port}/ready", "SALAD_QUEUE_WORKER": str(ROOT / "tests/support/fake_salad_queue_worker.py"),
           "FAKE_TARGET": f"http://127.0.0.1:{port}/generate", "FAKE_RESULTS": str(tmp_path / "results.json"),
           "FAKE_JOBS": json.dumps(jobs), "RAY_TMPDIR": ray_tmp, "FASTWAN_TINY_MODEL_DIR": str(tiny_model_root),
           "PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
           # local files in queue mode: the links must be this service's public address (never localhost)
           "FASTWAN_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen(["bash", str(ROOT / "scripts/entrypoint.sh")], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "results.json").exists():
            assert proc.poll() is None, (tmp_path / "log").read_text()[-4000:]
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()[-4000:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        kill_processes_mentioning(ray_tmp)
    output = (tmp_path / "log").read_text()
    for line in ("===== FastWan Serve container self-check", "PyTorch version:", "CUDA available: False",
                 "multiprocessing self-test: ok", "WORKER_MODE: queue", "Salad job-queue worker started"):
        assert line in output, line
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["ready_when_started"] == 200  # the worker only started once the model was ready
    ok, bad, retry = results["responses"]
    assert ok["http"] == 200 and ok["body"]["status"] == "succeeded" and ok["attempts"] == 1
    assert bad["http"] == 200 and bad["body"]["status"] == "failed" and bad["attempts"] == 1  # not retried
    assert "prompt" in bad["body"]["error"]
    assert retry["body"]["job_id"] == ok["body"]["job_id"]  # Salad's retry got the stored result
    videos = list((tmp_path / "data" / "videos").glob("*.mp4"))
    assert len(videos) == 1
