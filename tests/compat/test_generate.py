"""The old worker's /generate, as Salad's job queue calls it (WORKER_MODE=queue), with the old deploy's B2
variables: the old payload (a size the model does not make, a frame count that is not 4k+1), the old answers
field by field, the old object names and a permanent link on B2's download host, Salad's retries."""

import httpx
import pytest

from devtools.procs import wait_http
from serve_app.media.video import probe_mp4
from tests.compat.conftest import assert_shape, fixture
from tests.conftest import BUCKET
from tests.support.fake_b2 import FakeB2

KEY_ID, APP_KEY, PREFIX = "0050123456789ab0000000001", "K005secretsecretsecret", "avatar/outputs"


@pytest.fixture(scope="module")
def queue_service(serve_cluster, tiny_model_root, image_host):
    from ray import serve

    from serve_app.app import build_app

    with FakeB2(serve_cluster.s3.endpoint, serve_cluster.s3.client(), KEY_ID, APP_KEY) as b2:
        # what the old deploy sets (B2_*), read by name: no FASTWAN_* storage setting at all
        args = dict(model="tiny", tiny_model_dir=str(tiny_model_root), worker_mode="queue", selfcheck=False,
                    b2_key_id=KEY_ID, b2_app_key=APP_KEY, b2_bucket_name=BUCKET, b2_prefix=PREFIX,
                    b2_api_url=b2.url, image_url_allowed_hosts=["127.0.0.1"])
        serve.run(build_app(args), name="compat", route_prefix="/compat")
        base = f"{serve_cluster.base_url}/compat"
        wait_http(f"{base}/ready", timeout_s=120)
        yield base, b2
        serve.delete("compat")


def test_old_payload_old_answer_old_object_name_permanent_link(queue_service, image_host, serve_cluster):
    base, b2 = queue_service
    body = fixture("generate_request.json", image_url=f"{image_host}/face.png")
    resp = httpx.post(f"{base}/generate", json=body, timeout=120)
    assert resp.status_code == 200
    out = resp.json()
    assert_shape(out, fixture("generate_succeeded_response.json"))
    assert out["output_url"] == f"{b2.url}/file/{BUCKET}/{PREFIX}/{body['musetalk_job_id']}.mp4"  # the old link
    m = out["metrics"]
    assert m["fps"] == pytest.approx(9 / m["duration_sec"], rel=0.02)  # old meaning: frames made per second
    assert (m["video_fps"], m["num_frames"], m["requested_num_frames"]) == (24, 9, 10)
    assert (m["size"], m["generated_size"]) == ("72x128", "64x128")
    video = httpx.get(out["output_url"], timeout=30)  # anyone can fetch it, no key, no expiry
    probe, _ = probe_mp4(video.content, decode=False)
    assert (probe.width, probe.height, probe.num_frames) == (72, 128, 9)  # the size asked, the frames made
    names = [o["Key"] for o in serve_cluster.s3.client().list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"]]
    assert f"{PREFIX}/{body['musetalk_job_id']}.mp4" in names
    assert all(n.startswith((f"{PREFIX}/fastwan/", f"{PREFIX}/mt-")) for n in names)  # ours kept apart


def test_a_retry_from_salad_gets_the_same_video(queue_service, image_host):
    base, _ = queue_service
    body = {**fixture("generate_request.json", image_url=f"{image_host}/face.png"), "musetalk_job_id": "mt-retried"}
    first = httpx.post(f"{base}/generate", json=body, headers={"Salad-Job-Id": "salad-7"}, timeout=120).json()
    again = httpx.post(f"{base}/generate", json=body, headers={"Salad-Job-Id": "salad-7"}, timeout=120).json()
    assert first["status"] == again["status"] == "succeeded" and again["output_url"] == first["output_url"]


@pytest.mark.parametrize("change, words", [
    ({"prompt": ""}, "prompt"),
    ({"image_url": "http://169.254.169.254/latest/meta-data"}, "image_url"),
    ({"width": 101}, "even"),
    ({"musetalk_job_id": "../escape"}, "musetalk_job_id"),
])
def test_every_failure_is_200_failed_with_the_reason(queue_service, image_host, change, words):
    base, _ = queue_service
    body = {**fixture("generate_request.json", image_url=f"{image_host}/face.png"), **change}
    resp = httpx.post(f"{base}/generate", json=body, timeout=120)
    assert resp.status_code == 200  # Salad stores it as the job's output and does not retry
    assert_shape(resp.json(), fixture("generate_failed_response.json"))
    assert words in resp.json()["error"]


def test_the_guide_payload_is_taken_as_it_is():
    """The orchestrator guide's 720x1280x121 (refused before: 720 is no multiple of 32) is made at 704x1280 and
    delivered at 720x1280 with its 121 frames."""
    import asyncio

    from serve_app.modes.contract import GenerateRequest, generate_params
    from serve_app.settings import Settings

    settings = Settings(max_pixel_frames=None).resolve(gpus=1, gpu_memory_gb=32)
    body = GenerateRequest.model_validate({**fixture("generate_request_guide.json"), "image_url": None})
    params = asyncio.run(generate_params(settings, body))
    assert (params.width, params.height, params.output_size, params.num_frames) == (704, 1280, (720, 1280), 121)
