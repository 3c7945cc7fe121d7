"""The real app on a real Ray Serve cluster: tiny model, diffusers backend, S3 protocol server, real HTTP."""

import concurrent.futures as cf
import json

import httpx
import pytest

from serve_app.media.video import probe_mp4
from tests.conftest import BUCKET
from tests.support.images import png_bytes
from tests.support.peers import FileServer, poll_video


def fetch_video(base_url, video_id):
    resp = httpx.get(f"{base_url}/v1/videos/{video_id}/content", follow_redirects=False, timeout=30)
    assert resp.status_code == 302  # S3: a presigned URL, so bytes never pass through the ingress
    assert "X-Amz-Signature" in resp.headers["location"]
    video = httpx.get(resp.headers["location"], timeout=30)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    return video.content


def test_create_poll_download_decode(serve_cluster):
    base = serve_cluster.base_url
    resp = httpx.post(f"{base}/v1/videos", json={"prompt": "a boat on the sea", "size": "96x64",
                                                 "num_frames": 9, "fps": 8, "seed": 11}, timeout=30)
    assert resp.status_code == 200, resp.text
    job = poll_video(base, resp.json()["id"])
    assert job["status"] == "completed", job
    probe, frames = probe_mp4(fetch_video(base, job["id"]))
    assert (probe.codec, probe.pix_fmt, probe.num_frames, probe.width, probe.height, probe.fps) == \
        ("h264", "yuv420p", 9, 96, 64, 8.0)
    assert frames.std() > 0  # a real generated picture, not a blank
    s3 = serve_cluster.s3.client()
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"serve/jobs/{job['id']}.json")["Body"].read())
    assert record["status"] == "completed" and record["video_key"] == f"videos/{job['id']}.mp4"
    assert record["metrics"]["generation_sec"] > 0


def test_image_to_video_with_upload(serve_cluster):
    base = serve_cluster.base_url
    resp = httpx.post(f"{base}/v1/videos", data={"prompt": "a red square", "size": "64x64", "num_frames": "9"},
                      files={"input_reference": ("ref.png", png_bytes(120, 90), "image/png")}, timeout=30)
    assert resp.status_code == 200, resp.text
    job = poll_video(base, resp.json()["id"])
    assert job["status"] == "completed", job
    assert probe_mp4(fetch_video(base, job["id"]), decode=False)[0].num_frames == 9
    stored = serve_cluster.s3.client().get_object(Bucket=BUCKET, Key=f"serve/inputs/{job['id']}.png")
    assert stored["ContentType"] == "image/png"


def test_generate_old_worker_payload_with_image_url(serve_cluster, tmp_path):
    (tmp_path / "ref.png").write_bytes(png_bytes(200, 100))
    with FileServer(tmp_path) as files:
        body = {"musetalk_job_id": "job-123", "image_url": f"{files.url}/ref.png", "prompt": "a person talking",
                "num_frames": 9, "width": 64, "height": 96, "steps": 2, "seed": 42, "guidance_scale": 1.0,
                "params": {}}
        resp = httpx.post(f"{serve_cluster.base_url}/generate", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["status"] == "succeeded" and out["error"] is None
    assert set(out["metrics"]) >= {"duration_sec", "peak_vram_gb", "fps"}
    probe, _ = probe_mp4(httpx.get(out["output_url"], timeout=30).content, decode=False)
    assert (probe.num_frames, probe.width, probe.height) == (9, 64, 96)


def test_concurrent_compatible_requests_share_a_batch(serve_cluster):
    base = serve_cluster.base_url

    def submit(body):
        return httpx.post(f"{base}/v1/videos", json=body, timeout=30).json()["id"]

    bodies = [{"prompt": f"dog {i}", "size": "64x64", "num_frames": 9, "seed": i} for i in range(4)]
    bodies.append({"prompt": "odd one", "size": "96x64", "num_frames": 9, "seed": 99})
    with cf.ThreadPoolExecutor(5) as pool:
        ids = list(pool.map(submit, bodies))
    jobs = [poll_video(base, i) for i in ids]
    assert all(j["status"] == "completed" for j in jobs), jobs
    sizes = [j["metrics"]["batch_size"] for j in jobs]
    assert max(sizes[:4]) >= 2, sizes  # same shape, same window: batched together
    assert sizes[4] == 1  # a different size never joins their batch
    assert [j["seed"] for j in jobs] == [0, 1, 2, 3, 99]


def test_bad_input_gets_4xx_over_real_http(serve_cluster):
    base = serve_cluster.base_url
    resp = httpx.post(f"{base}/v1/videos", json={"prompt": "x", "size": "65x64"}, timeout=30)
    assert resp.status_code == 400 and "width must be even" in resp.json()["error"]["message"]
    # the old worker's clients: a request that can never succeed is a 200 `failed` naming the field
    resp = httpx.post(f"{base}/generate", json={"prompt": "x", "width": 65}, timeout=30)
    assert resp.status_code == 200 and resp.json()["status"] == "failed" and "width" in resp.json()["error"]
    assert httpx.get(f"{base}/v1/videos/video_0123456789abcdef0123456789ab", timeout=30).status_code == 404


def test_generator_streams_progress_per_step(serve_cluster):
    from ray import serve

    from serve_app.contracts import GenerationParams, ProgressEvent, ResultEvent

    handle = serve.get_deployment_handle("Generator", app_name="fastwan")
    params = GenerationParams(prompt="x", width=64, height=64, num_frames=5, fps=8, num_inference_steps=4,
                              guidance_scale=1.0, seed=1)
    events = list(handle.options(stream=True).generate.remote([params]))
    assert [(e.step, e.total) for e in events if isinstance(e, ProgressEvent)] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert isinstance(events[-1], ResultEvent) and events[-1].videos[0].size == (5, 64, 64)


def test_health_and_ready(serve_cluster):
    base = serve_cluster.base_url
    assert httpx.get(f"{base}/health", timeout=30).json() == {"status": "ok", "model_loaded": True}
    ready = httpx.get(f"{base}/ready", timeout=30)
    assert ready.status_code == 200
    info = ready.json()["generator"]["info"]
    assert info["backend"] == "diffusers" and info["device"] == "cpu" and info["cuda_available"] is False
    assert ready.json()["generator"]["selfcheck_sec"] is not None


def test_openai_sdk_unmodified(serve_cluster):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{serve_cluster.base_url}/v1", api_key="unused", max_retries=0)
    video = client.videos.create(prompt="a bird flying", size="64x64", extra_body={"num_frames": 9, "seed": 3})
    assert video.status in ("queued", "in_progress") and video.id.startswith("video_")
    done = client.videos.poll(video.id, poll_interval_ms=200)
    assert done.status == "completed" and done.progress == 100
    assert client.videos.retrieve(video.id).status == "completed"
    content = client.videos.download_content(video.id)  # follows the redirect to S3
    probe, _ = probe_mp4(content.read(), decode=False)
    assert (probe.num_frames, probe.width, probe.height) == (9, 64, 64)
    with_image = client.videos.create_and_poll(
        prompt="from an image", size="64x64", input_reference=("ref.png", png_bytes(), "image/png"),
        extra_body={"num_frames": 9}, poll_interval_ms=200)
    assert with_image.status == "completed"
    listed = [v.id for v in client.videos.list(limit=100)]
    assert video.id in listed and with_image.id in listed
    with pytest.raises(openai.BadRequestError, match="not served"):
        client.videos.create(prompt="x", model="sora-2")
