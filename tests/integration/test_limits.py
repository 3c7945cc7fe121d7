"""The per-job time limit on a real Serve app (tiny model on CPU): a job that runs too long fails `timeout` with a
reason, the generator replica stops it at its next step and serves the next job, without being replaced."""

import time

import httpx
import pytest

from devtools.procs import wait_http
from tests.support.peers import poll_video


@pytest.fixture(scope="module")
def limited(serve_cluster, tiny_model_root, tmp_path_factory):
    from ray import serve

    from serve_app.app import build_app

    args = dict(model="tiny", tiny_model_dir=str(tiny_model_root), storage_url=f"file://{tmp_path_factory.mktemp('l')}",
                job_timeout_s=2.0, selfcheck=False, default_width=64, default_height=64, default_num_frames=9)
    serve.run(build_app(args), name="limits", route_prefix="/limits")
    wait_http(f"{serve_cluster.base_url}/limits/ready", timeout_s=120)
    yield f"{serve_cluster.base_url}/limits"
    serve.delete("limits")


def test_a_job_past_its_time_limit_fails_and_the_replica_serves_on(limited):
    started = time.monotonic()
    # about 20 s of work on a 2-core CPU (256x256x17 at 100 steps took only 1.6 s there: under the 2 s limit)
    long = httpx.post(f"{limited}/v1/videos", timeout=30, json={
        "prompt": "a long one", "size": "512x512", "num_frames": 33, "num_inference_steps": 100}).json()
    job = poll_video(limited, long["id"], timeout_s=60)
    assert job["status"] == "failed" and job["error"]["code"] == "timeout", job
    assert "job_timeout_s" in job["error"]["message"]
    assert time.monotonic() - started < 20  # 100 steps would take far longer
    after = httpx.post(f"{limited}/v1/videos", timeout=60, headers={"Prefer": "wait=50"},
                       json={"prompt": "a short one", "num_inference_steps": 2}).json()
    assert after["status"] == "completed", after
    ready = httpx.get(f"{limited}/ready", timeout=10).json()
    assert ready["ready"] and ready["generator"]["state"] == "ready"
