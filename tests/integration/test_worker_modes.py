"""WORKER_MODE=buffer on a real Serve app with the tiny model: heartbeats, claims, progress and final
reports against a small orchestrator; an invalid job is reported failed; a job claimed twice is made once."""

import time

import httpx
import pytest

from serve_app.media.video import probe_mp4
from tests.conftest import BUCKET
from tests.support.images import png_bytes
from tests.support.peers import FileServer
from tests.support.orchestrator import KEY, Orchestrator


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    (root / "face.png").write_bytes(png_bytes(120, 90, (30, 200, 30)))
    with FileServer(root) as files:
        yield files.url


def test_buffer_mode_pulls_reports_and_deduplicates(serve_cluster, tiny_model_root, image_server):
    from ray import serve

    from serve_app.app import build_app

    old_job = {"prompt": "a person talking", "num_frames": 9, "width": 64, "height": 64, "steps": 2}
    jobs = [
        {"buffer_job_id": "b-1", "payload": {**old_job, "musetalk_job_id": "m-1",
                                             "image_url": f"{image_server}/face.png"}},
        {"buffer_job_id": "b-2", **old_job, "seed": 5},                      # fields at top level
        {"buffer_job_id": "b-bad", "payload": {**old_job, "width": 100}},   # not a multiple of 32
        {"buffer_job_id": "b-2", **old_job, "seed": 5},                      # claimed twice
    ]
    with Orchestrator(jobs) as orch:
        args = dict(model="tiny", tiny_model_dir=str(tiny_model_root), storage_url=f"s3://{BUCKET}/buffer",
                    s3_endpoint_url=serve_cluster.s3.endpoint, s3_region="us-east-1", worker_mode="buffer",
                    orchestrator_base_url=orch.url, internal_api_key=KEY, buffer_worker_id="w-test",
                    gpu_class="cpu-test", buffer_heartbeat_s=0.5, image_url_allowed_hosts=["127.0.0.1"],
                    selfcheck=False)
        serve.run(build_app(args), name="buffer", route_prefix="/buffer")
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(orch.final(j) for j in ("b-1", "b-2", "b-bad")):
                time.sleep(0.5)
            time.sleep(3)  # let the duplicate claim of b-2 finish too
        finally:
            serve.delete("buffer")
    assert {h["worker_id"] for h in orch.heartbeats} == {"w-test"}
    assert {h["gpu_class"] for h in orch.heartbeats} == {"cpu-test"} and orch.heartbeats[0]["capacity"] == 1
    assert {h["status"] for h in orch.heartbeats} <= {"idle", "busy"} and len(orch.heartbeats) >= 3
    for job_id in ("b-1", "b-2"):
        final = orch.final(job_id)
        assert final["status"] == "succeeded" and final["error"] is None, final
        video = httpx.get(final["output_url"], timeout=30).content  # a presigned S3 URL
        probe, _ = probe_mp4(video, decode=False)
        assert (probe.num_frames, probe.width, probe.height) == (9, 64, 64)
        assert any(r["status"] == "running" for r in orch.reports[job_id])
    finals_b2 = [r for r in orch.reports["b-2"] if r["status"] == "succeeded"]
    assert len(finals_b2) == 2 and len({r["job_id"] for r in finals_b2}) == 1  # reported twice, made once
    bad = orch.final("b-bad")
    assert bad["status"] == "failed" and "multiple of 32" in bad["error"]
