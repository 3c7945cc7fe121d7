"""The HTTP layer against a fake generator (no Ray): status codes, error messages, job lifecycle."""

import base64
import time

import numpy as np
import pytest

from serve_app.media.video import probe_mp4
from tests.support.app import api_client, job_core
from tests.support.fakes import FakeGenerator
from tests.support.images import png_bytes


@pytest.fixture
def app(tmp_path):
    generator = FakeGenerator()
    core = job_core(tmp_path, generator, default_width=64, default_height=64, default_num_frames=9, default_seed=None)
    with api_client(core) as client:
        client.generator = generator
        yield client


def wait_done(client, video_id, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/videos/{video_id}").json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.02)
    raise TimeoutError(video_id)


def test_create_poll_download(app):
    resp = app.post("/v1/videos", json={"prompt": "a cat", "size": "96x64", "num_frames": 9, "seed": 5, "fps": 8})
    assert resp.status_code == 200
    job = resp.json()
    assert job["object"] == "video" and job["status"] in ("queued", "in_progress")
    assert (job["size"], job["seconds"], job["seed"], job["num_frames"]) == ("96x64", "1", 5, 9)
    done = wait_done(app, job["id"])
    assert done["status"] == "completed" and done["progress"] == 100
    assert done["completed_at"] >= done["created_at"] and done["expires_at"] is None  # no TTL set
    content = app.get(f"/v1/videos/{job['id']}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
    probe, frames = probe_mp4(content.content)
    assert (probe.num_frames, probe.width, probe.height, probe.fps) == (9, 96, 64, 8.0)
    assert abs(int(np.median(frames)) - 5) <= 3  # the fake's colour for seed 5 survived the encode


def test_a_video_encoded_by_the_backend_is_stored_as_sent(app):
    """The FastVideo backend encodes in its GPU worker: the ingress stores those bytes, encoding nothing itself."""
    app.generator.encoded = True
    job = app.post("/v1/videos", json={"prompt": "a cat", "size": "96x64", "num_frames": 9, "seed": 7, "fps": 8}).json()
    done = wait_done(app, job["id"])
    assert done["status"] == "completed" and done["metrics"]["encode_sec"] == 0.012  # the worker's encode tail
    content = app.get(f"/v1/videos/{job['id']}/content").content
    assert done["metrics"]["video_bytes"] == len(content)
    probe, frames = probe_mp4(content)
    assert (probe.num_frames, probe.width, probe.height) == (9, 96, 64) and abs(int(np.median(frames)) - 7) <= 3


def test_a_video_result_is_an_mp4_with_its_shape():
    from pydantic import ValidationError

    from serve_app.contracts import VideoResult

    video = VideoResult(mp4=b"x", num_frames=5, height=64, width=96, seed=1, generation_sec=0)
    assert video.size == (5, 64, 96) and video.encode_sec == 0.0
    with pytest.raises(ValidationError, match="mp4"):
        VideoResult(num_frames=5, height=64, width=96, seed=1, generation_sec=0)


def test_multipart_with_uploaded_image_and_extensions(app):
    resp = app.post("/v1/videos", data={"prompt": "a dog", "size": "64x64", "seed": "9"},
                    files={"input_reference": ("ref.png", png_bytes(), "image/png")})
    assert resp.status_code == 200, resp.text
    done = wait_done(app, resp.json()["id"])
    assert done["status"] == "completed" and done["seed"] == 9


def test_data_url_reference(app):
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    resp = app.post("/v1/videos", json={"prompt": "x", "input_reference": url})
    assert resp.status_code == 200 and wait_done(app, resp.json()["id"])["status"] == "completed"


@pytest.mark.parametrize("body, status, param, words", [
    ({"prompt": ""}, 400, "prompt", "empty"),
    ({}, 400, "prompt", "required"),
    ({"prompt": "x", "size": "99x64"}, 400, "size", "even"),
    ({"prompt": "x", "size": "wide"}, 400, "size", "WIDTHxHEIGHT"),
    ({"prompt": "x", "num_frames": 2}, 400, "num_frames", "at least 5"),
    ({"prompt": "x", "seconds": "abc"}, 400, "seconds", "number"),
    ({"prompt": "x", "model": "sora-2"}, 400, "model", "not served"),
    ({"prompt": "x", "frames": 9}, 400, "frames", "not a known field"),
    ({"prompt": "x", "seed": -1}, 400, "seed", "greater than or equal"),
    ({"prompt": "x", "input_reference": "file:///etc/passwd"}, 400, "input_reference", "only http and https"),
    ({"prompt": "x", "input_reference": "data:image/png;base64,AAAA"}, 400, "input_reference", "decoded"),
])
def test_bad_input_gets_a_clear_4xx(app, body, status, param, words):
    resp = app.post("/v1/videos", json=body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and words in error["message"], error
    assert error["type"] == "invalid_request_error"


def test_bad_bodies(app):
    assert app.post("/v1/videos", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert app.post("/v1/videos", json=[1, 2]).status_code == 400
    resp = app.post("/v1/videos", content=b"x", headers={"content-type": "text/plain"})
    assert resp.status_code == 415 and "JSON or multipart" in resp.json()["error"]["message"]
    resp = app.post("/v1/videos", data={"prompt": "x"}, files={"input_reference": ("a.png", b"garbage", "image/png")})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "input_reference"


def test_unknown_ids_and_unfinished_content(app):
    assert app.get("/v1/videos/video_0000000000000000000000000000").status_code == 404
    assert app.get("/v1/videos/../../etc/passwd").status_code == 404
    assert app.delete("/v1/videos/video_0000000000000000000000000000").status_code == 404
    app.generator.delay_s = 0.5
    job = app.post("/v1/videos", json={"prompt": "slow"}).json()
    resp = app.get(f"/v1/videos/{job['id']}/content")
    assert resp.status_code == 409 and "poll" in resp.json()["error"]["message"]
    assert app.delete(f"/v1/videos/{job['id']}").status_code == 409
    wait_done(app, job["id"])
    assert app.get(f"/v1/videos/{job['id']}/content", params={"variant": "thumbnail"}).status_code == 400


def test_failed_generation_is_reported_not_lost(app):
    job = app.post("/v1/videos", json={"prompt": "please fail"}).json()
    done = wait_done(app, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "generation_failed"
    assert "told to fail" in done["error"]["message"]
    assert app.get(f"/v1/videos/{job['id']}/content").status_code == 409


def test_list_paginates_newest_first_and_delete(app):
    ids = [app.post("/v1/videos", json={"prompt": f"p{i}"}).json()["id"] for i in range(5)]
    for i in ids:
        wait_done(app, i)
    page = app.get("/v1/videos", params={"limit": 2}).json()
    assert [v["id"] for v in page["data"]] == ids[::-1][:2] and page["has_more"]
    rest = app.get("/v1/videos", params={"limit": 10, "after": page["last_id"]}).json()
    assert [v["id"] for v in rest["data"]] == ids[::-1][2:] and not rest["has_more"]
    asc = app.get("/v1/videos", params={"order": "asc", "limit": 1}).json()
    assert asc["data"][0]["id"] == ids[0]
    assert app.get("/v1/videos", params={"after": "video_nope"}).status_code == 400
    deleted = app.delete(f"/v1/videos/{ids[0]}").json()
    assert deleted == {"id": ids[0], "object": "video.deleted", "deleted": True}
    assert app.get(f"/v1/videos/{ids[0]}").status_code == 404


def test_generate_old_contract(app):
    body = {"musetalk_job_id": "mt-1", "prompt": "hello", "num_frames": 9, "width": 64, "height": 64,
            "steps": 2, "seed": 42, "guidance_scale": 1.0, "params": {"fps": 8}, "unknown_old_field": 1}
    resp = app.post("/generate", json=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["status"] == "succeeded" and out["error"] is None
    m = out["metrics"]
    assert m["video_fps"] == 8 and m["duration_sec"] > 0  # fps is the old throughput: frames per second made
    assert m["fps"] == pytest.approx(9 / m["duration_sec"], rel=0.01)
    video = app.get(out["output_url"].replace("http://testserver", ""))
    assert probe_mp4(video.content)[0].num_frames == 9
    failed = app.post("/generate", json={**body, "musetalk_job_id": "mt-2", "prompt": "please fail"})
    assert failed.status_code == 200 and failed.json()["status"] == "failed"  # as the old worker answered
    assert "told to fail" in failed.json()["error"]
    bad = app.post("/generate", json={**body, "musetalk_job_id": "mt-3", "width": 101})
    assert bad.status_code == 200 and bad.json()["status"] == "failed" and "size" in bad.json()["error"]


def test_health_and_ready(app):
    assert app.get("/health").json() == {"status": "ok", "model_loaded": True}
    assert app.get("/ready").status_code == 200
    app.generator.state = "loading"
    resp = app.get("/ready")
    assert resp.status_code == 503 and resp.json()["reason"] == "fake says so"
    assert app.get("/health").json() == {"status": "ok", "model_loaded": False}
    app.generator.state = "hang"
    resp = app.get("/ready")
    assert resp.status_code == 503 and "starting" in resp.json()["reason"]


def test_prefer_wait_holds_the_response_until_done(app):
    app.generator.delay_s = 0.3
    job = app.post("/v1/videos", json={"prompt": "waits"}, headers={"Prefer": "wait=10"}).json()
    assert job["status"] == "completed"
    other = app.post("/v1/videos", json={"prompt": "polls"}).json()
    assert other["status"] == "queued"
    assert app.get(f"/v1/videos/{other['id']}", headers={"Prefer": "wait=10"}).json()["status"] == "completed"
    app.generator.delay_s = 2.0
    slow = app.post("/v1/videos", json={"prompt": "slow"}).json()
    start = time.monotonic()
    held = app.get(f"/v1/videos/{slow['id']}", headers={"Prefer": "wait=0.3"}).json()
    assert held["status"] in ("queued", "in_progress") and 0.25 < time.monotonic() - start < 1.5
    assert app.get(f"/v1/videos/{slow['id']}", headers={"Prefer": "wait=soon"}).status_code == 400


def test_reference_object_form(app):
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    resp = app.post("/v1/videos", json={"prompt": "x", "input_reference": {"image_url": url}})
    assert resp.status_code == 200 and wait_done(app, resp.json()["id"])["status"] == "completed"
    resp = app.post("/v1/videos", data={"prompt": "x", "input_reference[image_url]": url})
    assert resp.status_code == 200, resp.text
    resp = app.post("/v1/videos", json={"prompt": "x", "input_reference": {"file_id": "file_1"}})
    assert resp.status_code == 400 and "file_id" in resp.json()["error"]["message"]


def test_prometheus_metrics(app):
    done = app.post("/v1/videos", json={"prompt": "a cat"}, headers={"Prefer": "wait=10"}).json()
    assert done["status"] == "completed"
    app.post("/v1/videos", json={"prompt": "please fail"}, headers={"Prefer": "wait=10"})
    resp = app.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    for line in ('fastwan_jobs_finished_total{code="",status="completed"} 1.0',
                 'fastwan_jobs_finished_total{code="generation_failed",status="failed"} 1.0',
                 "fastwan_jobs_accepted_total 2.0", "fastwan_queue_depth 0.0",
                 'fastwan_generator_replicas{state="ready"} 1.0', "fastwan_generator_replicas_busy 0.0",
                 'fastwan_jobs{status="queued"} 0.0', 'fastwan_job_stage_seconds_count{stage="total"} 1.0',
                 "fastwan_generation_seconds_count 1.0"):
        assert line in text, line


def test_a_size_the_model_does_not_make_is_delivered_exactly(app):
    """720x1280's little brother: 100x66 is made at 96x64, and the MP4 is 100x66 with the frames asked (rounded)."""
    job = app.post("/v1/videos", json={"prompt": "x", "size": "100x66", "num_frames": 10}).json()
    done = wait_done(app, job["id"])
    assert done["status"] == "completed" and done["size"] == "100x66" and done["num_frames"] == 9
    assert done["metrics"]["generated_size"] == "96x64" and done["metrics"]["requested_num_frames"] == 10
    probe, _ = probe_mp4(app.get(f"/v1/videos/{job['id']}/content").content, decode=False)
    assert (probe.width, probe.height, probe.num_frames) == (100, 66, 9)
