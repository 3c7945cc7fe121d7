"""WORKER_MODE=buffer against a small orchestrator speaking the old protocol: heartbeats, claims, the progress
messages by musetalk_job_id in their order, the status reports, field by field (fixtures/buffer_*.json); a
bad job reported failed; a job claimed twice made once."""

import time

import httpx
import pytest

from serve_app.media.video import probe_mp4
from tests.compat.conftest import assert_shape, fixture
from tests.conftest import BUCKET
from tests.support.orchestrator import KEY, Orchestrator


@pytest.fixture(scope="module")
def orchestrated(serve_cluster, tiny_model_root, image_host):
    from ray import serve

    from serve_app.app import build_app

    jobs = fixture("buffer_jobs.json", image_url=f"{image_host}/face.png")
    with Orchestrator(jobs) as orch:
        args = dict(model="tiny", tiny_model_dir=str(tiny_model_root), storage_url=f"s3://{BUCKET}/buffer",
                    s3_endpoint_url=serve_cluster.s3.endpoint, s3_region="us-east-1", worker_mode="buffer",
                    orchestrator_base_url=orch.url, internal_api_key=KEY, buffer_worker_id="w-test",
                    buffer_heartbeat_s=0.5, image_url_allowed_hosts=["127.0.0.1"], selfcheck=False)
        serve.run(build_app(args), name="buffer", route_prefix="/buffer")
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(orch.final(j) for j in ("buf-1", "buf-bad")):
                time.sleep(0.5)
            time.sleep(3)  # the second claim of buf-1 reports too
        finally:
            serve.delete("buffer")
    return orch


def test_heartbeats_are_the_old_ones(orchestrated):
    beats = orchestrated.heartbeats
    assert len(beats) >= 3 and {b["worker_id"] for b in beats} == {"w-test"}
    for beat in beats:
        assert_shape({k: v for k, v in beat.items() if k in ("status", "gpu_class", "capacity")},
                     fixture("buffer_messages.json")["heartbeat"])
    assert {b["gpu_class"] for b in beats} == {"Unknown GPU"}  # the old default, GPU_CLASS unset
    assert {b["status"] for b in beats} == {"idle", "busy"}


def test_a_job_reports_progress_then_its_result_as_the_old_worker(orchestrated):
    messages = fixture("buffer_messages.json")
    progress = orchestrated.progress["mt-buf-1"]
    first_run = progress[:4]
    for got, want in zip(first_run, messages["progress_succeeded"], strict=True):
        assert_shape(got, want, "progress")
    assert set(first_run[-1]) == {"status", "progress", "output_url"}
    report = orchestrated.reports["buf-1"][0]
    assert_shape(report, messages["status_succeeded"], "status")
    assert set(report) == {"status", "output_url", "metrics"}  # nothing the old orchestrator did not get
    # the status report comes before the last progress message, as the old worker sent them
    order = [(kind, ident) for kind, ident, body in orchestrated.order if body.get("status") == "succeeded"][:2]
    assert order == [("status", "buf-1"), ("progress", "mt-buf-1")]
    probe, _ = probe_mp4(httpx.get(report["output_url"], timeout=30).content, decode=False)
    assert (probe.width, probe.height, probe.num_frames) == (72, 128, 9)  # the old buffer size rule: as asked


def test_a_bad_job_is_reported_failed(orchestrated):
    messages = fixture("buffer_messages.json")
    assert_shape(orchestrated.reports["buf-bad"][0], messages["status_failed"], "status")
    assert "prompt" in orchestrated.reports["buf-bad"][0]["error"]
    for got, want in zip(orchestrated.progress["mt-buf-bad"], messages["progress_failed"], strict=True):
        assert_shape(got, want, "progress")


def test_a_job_claimed_twice_is_made_once(orchestrated):
    finals = [r for r in orchestrated.reports["buf-1"] if r["status"] == "succeeded"]
    assert len(finals) == 2 and len({r["output_url"].split("?")[0] for r in finals}) == 1
