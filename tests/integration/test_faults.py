"""Faults on a real Serve app: the generator replica killed mid-job, the S3 server unreachable mid-run,
the ingress replica killed with jobs in flight. The invariants: every accepted job ends completed (or
failed with a clear reason), none is lost or duplicated, none stays in_progress, and a completed job's
MP4 is in storage and decodes.

The app here ("faults", at /faults) reaches S3 through a TCP proxy that the tests stop and start, and
uses short heartbeat/recovery intervals so the tests run in seconds.
"""

import json
import os
import signal
import time

import httpx
import pytest

from serve_app.media.video import probe_mp4
from tests.conftest import BUCKET
from devtools.procs import wait_http
from tests.support.peers import TcpProxy
from tests.support.ray_state import actor_pid

SLOW = {"size": "256x256", "num_frames": 17, "num_inference_steps": 12}


@pytest.fixture(scope="module")
def faults(serve_cluster, tiny_model_root):
    from ray import serve

    from serve_app.app import build_app

    proxy = TcpProxy(serve_cluster.s3.port).start()
    args = dict(
        model="tiny", tiny_model_dir=str(tiny_model_root), storage_url=f"s3://{BUCKET}/faults",
        s3_endpoint_url=proxy.url, s3_region="us-east-1", s3_timeout_s=2, storage_retry_s=30,
        heartbeat_s=1, stale_after_s=4, recovery_interval_s=1, max_attempts=3,
        default_width=64, default_height=64, default_num_frames=9, selfcheck=False,
    )
    serve.run(build_app(args), name="faults", route_prefix="/faults")
    wait_http(f"{serve_cluster.base_url}/faults/ready", timeout_s=120)
    yield f"{serve_cluster.base_url}/faults", proxy, serve_cluster.s3
    serve.delete("faults")
    proxy.stop()


def get(url, **kw):
    """GET that rides over the moments when a replica is being replaced."""
    for _ in range(120):
        try:
            resp = httpx.get(url, timeout=10, **kw)
            if resp.status_code < 500:
                return resp
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def wait_status(base, video_id, statuses, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(f"{base}/v1/videos/{video_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"{video_id} never reached {statuses}")


def stored(s3, video_id):
    record = json.loads(s3.client().get_object(Bucket=BUCKET, Key=f"faults/jobs/{video_id}.json")["Body"].read())
    return record


def assert_done_and_decodes(base, s3, video_id):
    job = wait_status(base, video_id, ("completed", "failed"))
    assert job["status"] == "completed", job
    data = s3.client().get_object(Bucket=BUCKET, Key=f"faults/videos/{video_id}.mp4")["Body"].read()
    probe, _ = probe_mp4(data, decode=False)
    assert (probe.num_frames, probe.width, probe.height) == (job["num_frames"], *map(int, job["size"].split("x")))
    return stored(s3, video_id)


def no_unfinished_left(s3):
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="faults/active/")
    return listing.get("KeyCount", 0) == 0


def test_generator_replica_killed_mid_job_is_retried(faults):
    base, _, s3 = faults
    for round_ in range(2):  # twice: each time a fresh replica has to come up
        job = httpx.post(f"{base}/v1/videos", json={"prompt": f"killed {round_}", **SLOW}, timeout=30).json()
        wait_status(base, job["id"], ("in_progress",))
        time.sleep(0.3)
        os.kill(actor_pid("ServeReplica:faults:Generator"), signal.SIGKILL)
        record = assert_done_and_decodes(base, s3, job["id"])
        assert record["attempts"] == 2, record  # the killed attempt, then the one that finished


def test_storage_outage_mid_run(faults):
    base, proxy, s3 = faults
    job = httpx.post(f"{base}/v1/videos", json={"prompt": "outage", **SLOW}, timeout=30).json()
    wait_status(base, job["id"], ("in_progress",))
    proxy.stop()
    try:
        refused = httpx.post(f"{base}/v1/videos", json={"prompt": "during the outage"}, timeout=60)
        assert refused.status_code == 503 and "nothing was accepted" in refused.json()["error"]["message"]
        assert get(f"{base}/v1/videos/{job['id']}").json()["id"] == job["id"]  # still answered from memory
        time.sleep(4)  # the job finishes generating while storage is down: its writes wait and retry
    finally:
        proxy.start()
    assert_done_and_decodes(base, s3, job["id"])
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="faults/jobs/")
    ids = [o["Key"] for o in listing.get("Contents", [])]
    assert len(ids) == len(set(ids))  # the refused request left nothing behind


def test_ingress_killed_with_jobs_in_flight_recovers_them(faults):
    base, _, s3 = faults
    ids = [httpx.post(f"{base}/v1/videos", json={"prompt": f"orphan {i}", **SLOW}, timeout=30).json()["id"]
           for i in range(3)]
    wait_status(base, ids[0], ("in_progress",))
    os.kill(actor_pid("ServeReplica:faults:Ingress"), signal.SIGKILL)
    records = [assert_done_and_decodes(base, s3, i) for i in ids]  # adopted by the replacement replica
    assert any(r["attempts"] >= 2 for r in records)
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="faults/videos/")
    keys = [o["Key"] for o in listing.get("Contents", [])]
    for i in ids:
        assert keys.count(f"faults/videos/{i}.mp4") == 1
    deadline = time.monotonic() + 30
    while not no_unfinished_left(s3) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert no_unfinished_left(s3)
