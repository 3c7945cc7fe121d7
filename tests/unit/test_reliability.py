"""Reliability and security of the job path, against a fake generator (no Ray): idempotency, cancel,
backpressure, replica loss, storage outages, recovery of orphaned jobs, webhooks, API keys, body size."""

import asyncio
import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest

from serve_app.jobs.records import JobRecord, JobStatus
from serve_app.jobs.store import JobStore
from serve_app.jobs.webhooks import verify
from serve_app.storage.base import StorageError
from serve_app.storage.local import LocalStorage
from tests.support.app import api_client, job_core
from tests.support.fakes import FakeGenerator

SMALL = dict(default_width=64, default_height=64, default_num_frames=9)


class FlakyStorage(LocalStorage):
    """Local storage whose writes fail while `down` is set (a storage outage)."""

    down = False

    def put_bytes(self, key, data, content_type):
        if self.down:
            raise StorageError("connection refused (test outage)")
        return super().put_bytes(key, data, content_type)

    def put_file(self, key, path, content_type):
        if self.down:
            raise StorageError("connection refused (test outage)")
        return super().put_file(key, path, content_type)


def make(tmp_path, generator=None, storage=None, **overrides):
    core = job_core(tmp_path, generator or FakeGenerator(), storage=storage, **{**SMALL, **overrides})
    return api_client(core), core


def wait_done(client, video_id, timeout=10, headers=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/videos/{video_id}", headers=headers).json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.02)
    raise TimeoutError(video_id)


def test_idempotency_key_returns_the_same_job(tmp_path):
    client, service = make(tmp_path)
    with client:
        body = {"prompt": "a cat", "seed": 1}
        first = client.post("/v1/videos", json=body, headers={"Idempotency-Key": "k-1"}).json()
        again = client.post("/v1/videos", json=body, headers={"Idempotency-Key": "k-1"}).json()
        assert again["id"] == first["id"]
        other = client.post("/v1/videos", json=body, headers={"Idempotency-Key": "k-2"}).json()
        assert other["id"] != first["id"]
        clash = client.post("/v1/videos", json={**body, "seed": 2}, headers={"Idempotency-Key": "k-1"})
        assert clash.status_code == 409 and "different request" in clash.json()["error"]["message"]
        wait_done(client, first["id"])
        ids = [v["id"] for v in client.get("/v1/videos", params={"limit": 100}).json()["data"]]
        assert sorted(ids) == sorted([first["id"], other["id"]])  # no duplicate, nothing half-made


def test_generate_retry_reuses_the_stored_result(tmp_path):
    generator = FakeGenerator()
    client, _ = make(tmp_path, generator)
    with client:
        body = {"musetalk_job_id": "mt-7", "prompt": "hi", "num_frames": 9, "width": 64, "height": 64}
        first = client.post("/generate", json=body).json()
        calls = len(generator.batches)
        again = client.post("/generate", json=body).json()
        assert again["status"] == "succeeded" and again["job_id"] == first["job_id"]
        assert len(generator.batches) == calls  # not generated again
        salad = {"prompt": "hi", "num_frames": 9, "width": 64, "height": 64}
        a = client.post("/generate", json=salad, headers={"Salad-Job-Id": "s-1"}).json()
        b = client.post("/generate", json=salad, headers={"Salad-Job-Id": "s-1"}).json()
        assert a["job_id"] == b["job_id"]


def test_generate_retry_after_a_failure_generates_again(tmp_path):
    generator = FakeGenerator()
    client, _ = make(tmp_path, generator)
    with client:
        body = {"musetalk_job_id": "mt-8", "prompt": "please fail", "num_frames": 9, "width": 64, "height": 64}
        failed = client.post("/generate", json=body)
        assert failed.status_code == 200 and failed.json()["status"] == "failed"  # the old worker's answer
        generator.fail_prompts = ()
        retried = client.post("/generate", json=body).json()
        assert retried["status"] == "succeeded" and retried["job_id"] != failed.json()["job_id"]


def test_cancel_and_delete_queued_jobs(tmp_path):
    client, _ = make(tmp_path, FakeGenerator(delay_s=0.6))
    with client:
        running = client.post("/v1/videos", json={"prompt": "first"}).json()
        queued = client.post("/v1/videos", json={"prompt": "second"}).json()
        doomed = client.post("/v1/videos", json={"prompt": "third"}).json()
        time.sleep(0.1)
        assert client.get(f"/v1/videos/{running['id']}").json()["status"] == "in_progress"
        assert client.post(f"/v1/videos/{running['id']}/cancel").status_code == 409
        cancelled = client.post(f"/v1/videos/{queued['id']}/cancel").json()
        assert cancelled["status"] == "failed" and cancelled["error"]["code"] == "cancelled"
        assert client.delete(f"/v1/videos/{doomed['id']}").json()["deleted"] is True
        assert client.get(f"/v1/videos/{doomed['id']}").status_code == 404
        assert wait_done(client, running["id"])["status"] == "completed"
        assert client.post(f"/v1/videos/{running['id']}/cancel").status_code == 409


def test_a_write_spawned_before_a_delete_never_brings_the_video_back(tmp_path):
    """A heartbeat or progress write of a queued job that only runs once the job was cancelled and deleted (a busy
    event loop) must not store its record again: the deleted video stays deleted."""
    from serve_app.contracts import GenerationParams
    from serve_app.jobs.errors import JobNotFound

    async def scenario():
        core = job_core(tmp_path, FakeGenerator(), **SMALL)  # not started: the job stays queued
        job, _ = await core.service.submit(GenerationParams(prompt="doomed", width=64, height=64, num_frames=9, fps=8,
                                                            num_inference_steps=1, guidance_scale=1.0, seed=0))
        late = core.runner.save(core.runner.live[job.id])  # spawned now, scheduled only after the delete
        await core.service.delete(job.id)
        await late
        with pytest.raises(JobNotFound):
            await core.service.get(job.id)
        return job.id

    job_id = asyncio.run(scenario())
    assert not (tmp_path / "jobs" / f"{job_id}.json").exists()


def test_backpressure_429_with_retry_after_and_ready_reports_it(tmp_path):
    client, _ = make(tmp_path, FakeGenerator(delay_s=0.5), max_pending_jobs=2)
    with client:
        ids = [client.post("/v1/videos", json={"prompt": f"p{i}"}).json()["id"] for i in range(2)]
        full = client.post("/v1/videos", json={"prompt": "one too many"})
        assert full.status_code == 429 and int(full.headers["Retry-After"]) >= 1
        assert "limit 2" in full.json()["error"]["message"]
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["saturated"] and "saturated" in ready.json()["reason"]
        assert client.post("/generate", json={"prompt": "x"}).status_code == 429
        for i in ids:
            wait_done(client, i)
        assert client.get("/ready").status_code == 200
        assert client.post("/v1/videos", json={"prompt": "fits again"}).status_code == 200


def test_generator_replica_lost_is_retried_then_given_up(tmp_path):
    client, _ = make(tmp_path, FakeGenerator(lose_replica=1), max_attempts=3)
    with client:
        job = wait_done(client, client.post("/v1/videos", json={"prompt": "x"}).json()["id"])
        assert job["status"] == "completed"
    client, _ = make(tmp_path / "b", FakeGenerator(lose_replica=5), max_attempts=3)
    with client:
        job = wait_done(client, client.post("/v1/videos", json={"prompt": "x"}).json()["id"])
        assert job["status"] == "failed" and "lost 3 times" in job["error"]["message"]


def test_storage_outage_nothing_accepted_then_nothing_lost(tmp_path):
    storage = FlakyStorage(tmp_path)
    client, service = make(tmp_path, FakeGenerator(delay_s=0.3), storage=storage, storage_retry_s=1.0)
    with client:
        storage.down = True
        resp = client.post("/v1/videos", json={"prompt": "during the outage"})
        assert resp.status_code == 503 and "nothing was accepted" in resp.json()["error"]["message"]
        assert resp.headers["Retry-After"]
        storage.down = False
        job = client.post("/v1/videos", json={"prompt": "accepted"}).json()
        storage.down = True  # down while it generates; it comes back within the retry budget
        threading.Timer(0.5, lambda: setattr(storage, "down", False)).start()
        done = wait_done(client, job["id"])
        assert done["status"] == "completed"
        assert (tmp_path / "videos" / f"{job['id']}.mp4").is_file()


def test_storage_down_longer_than_retries_never_marks_completed(tmp_path):
    storage = FlakyStorage(tmp_path)
    client, service = make(tmp_path, FakeGenerator(delay_s=0.2), storage=storage, storage_retry_s=0.3)
    with client:
        job = client.post("/v1/videos", json={"prompt": "x"}).json()
        storage.down = True
        time.sleep(1.5)
        stored = JobRecord.model_validate_json((tmp_path / "jobs" / f"{job['id']}.json").read_text())
        assert stored.status != JobStatus.completed  # no video, so never completed
        assert not (tmp_path / "videos" / f"{job['id']}.mp4").exists()
        assert (tmp_path / "active" / job["id"]).exists()  # left for recovery
        storage.down = False
        # recovery (another replica, or this one later) finishes it
        service.runner.live.clear()
        stored.heartbeat_at = 0
        storage.put_bytes(f"jobs/{job['id']}.json", stored.model_dump_json().encode(), "application/json")
        adopted = asyncio.run(service.recovery.recover_once())
        assert adopted == [job["id"]]


def test_orphaned_jobs_are_adopted_once(tmp_path):
    """A job whose ingress died: rerun from its stored record; already-stored videos just complete."""
    client, _ = make(tmp_path)
    with client:
        done = wait_done(client, client.post("/v1/videos", json={"prompt": "finished"}).json()["id"])
    store = JobStore(LocalStorage(tmp_path))
    orphan = JobRecord.model_validate_json((tmp_path / "jobs" / f"{done['id']}.json").read_text())
    # 1. a job that was mid-run when its replica died (stale heartbeat, active marker, no video)
    lost = orphan.model_copy(update={"id": "video_" + "0" * 12 + "a" * 16, "status": JobStatus.in_progress,
                                     "heartbeat_at": time.time() - 3600, "video_key": None, "attempts": 1})
    # 2. a job whose video was stored but whose final record write was lost
    written = orphan.model_copy(update={"id": "video_" + "0" * 12 + "b" * 16, "status": JobStatus.in_progress,
                                        "heartbeat_at": time.time() - 3600, "attempts": 1})
    (tmp_path / "videos" / f"{written.id}.mp4").write_bytes((tmp_path / "videos" / f"{done['id']}.mp4").read_bytes())
    for job in (lost, written):
        asyncio.run(store.save(job))
        asyncio.run(store.mark_active(job.id))

    async def two_replicas_race():
        a, b = job_core(tmp_path, FakeGenerator(), **SMALL), job_core(tmp_path, FakeGenerator(), **SMALL)
        got_a, got_b = await asyncio.gather(a.recovery.recover_once(), b.recovery.recover_once())
        for core in (a, b):
            for live in list(core.runner.live.values()):
                await live.done.wait()
        return got_a, got_b

    got_a, got_b = asyncio.run(two_replicas_race())
    assert sorted(got_a + got_b) == sorted([lost.id, written.id])  # each adopted by exactly one replica
    for job_id in (lost.id, written.id):
        final = JobRecord.model_validate_json((tmp_path / "jobs" / f"{job_id}.json").read_text())
        assert final.status == JobStatus.completed and (tmp_path / "videos" / f"{job_id}.mp4").is_file()
        assert not (tmp_path / "active" / job_id).exists()
    assert JobRecord.model_validate_json((tmp_path / "jobs" / f"{lost.id}.json").read_text()).attempts == 2


class Receiver(http.server.BaseHTTPRequestHandler):
    calls: list = []
    fail_first = 0

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.calls.append((dict(self.headers), body))
        status = 500 if len(Receiver.calls) <= Receiver.fail_first else 204
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_signed_and_retried(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.calls, Receiver.fail_first = [], 1
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    client, _ = make(tmp_path, image_url_allowed_hosts=["127.0.0.1"], webhook_secret="s3cret")
    try:
        with client:
            job = client.post("/v1/videos", json={"prompt": "x", "webhook_url": url}).json()
            wait_done(client, job["id"])
            deadline = time.monotonic() + 10
            while len(Receiver.calls) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        server.shutdown()
    assert len(Receiver.calls) == 2  # a 500, then delivered
    headers, body = Receiver.calls[-1]
    assert headers["X-FastWan-Event"] == "video.completed" and headers["X-FastWan-Delivery"].endswith("-2")
    assert json.loads(body)["id"] == job["id"] and json.loads(body)["status"] == "completed"
    assert verify("s3cret", headers["X-FastWan-Signature"], body)
    assert not verify("wrong", headers["X-FastWan-Signature"], body)
    t, mac = headers["X-FastWan-Signature"].removeprefix("t=").split(",v1=")
    assert mac == hmac.new(b"s3cret", f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def test_api_key_required_except_health_and_ready(tmp_path):
    client, _ = make(tmp_path, api_keys=["key-a", "key-b"])
    with client:
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
        denied = client.get("/v1/videos")
        assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.get("/v1/videos", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/v1/videos", headers={"Authorization": "Bearer key-b"}).status_code == 200
        assert client.get("/v1/videos", headers={"Salad-Api-Key": "key-a"}).status_code == 200
        assert client.post("/generate", json={"prompt": "x"}).status_code == 401


def test_request_body_cap(tmp_path):
    client, _ = make(tmp_path, max_request_bytes=2000)
    with client:
        resp = client.post("/v1/videos", json={"prompt": "x" * 5000})
        assert resp.status_code == 413 and "larger than 2000" in resp.json()["error"]["message"]
        chunks = (b"x" * 1000 for _ in range(5))  # no Content-Length: counted as it arrives
        resp = client.post("/v1/videos", content=chunks, headers={"content-type": "application/json"})
        assert resp.status_code == 413
