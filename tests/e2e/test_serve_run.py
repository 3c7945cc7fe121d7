"""`serve run configs/serve.yaml`, exactly as users start it (port moved to a free one), then the openai SDK."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from serve_app.media.video import probe_mp4
from devtools.procs import kill_processes_mentioning, wait_http
from tests.support.config import config_on_free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tiny_model_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve-run")
    config_path, port = config_on_free_port(work)
    ray_tmp = tempfile.mkdtemp(prefix="fwe-", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": ray_tmp,
           # reuse the session's tiny model instead of building another
           "FASTWAN_TINY_MODEL_DIR": str(tiny_model_root), "FASTWAN_DEFAULT_NUM_FRAMES": "9",
           "FASTWAN_DEFAULT_WIDTH": "64", "FASTWAN_DEFAULT_HEIGHT": "64"}
    serve_bin = Path(sys.executable).with_name("serve")
    log = open(work / "serve.log", "wb")
    (work / "launched_at").write_text(repr(time.time()))  # for the start-up timeline test
    # Ctrl-C must reach it even when these tests run as a background job, whose SIGINT is ignored (exec keeps that)
    proc = subprocess.Popen([str(serve_bin), "run", str(config_path)], cwd=work, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout_s=240)
        yield f"http://127.0.0.1:{port}", work
    except TimeoutError:
        log.flush()
        print((work / "serve.log").read_text()[-5000:])
        raise
    finally:
        proc.send_signal(signal.SIGINT)  # serve run shuts Serve and its local Ray down on Ctrl-C
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        kill_processes_mentioning(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_openai_sdk_against_serve_run(served):
    import openai

    base_url, work = served
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    video = client.videos.create_and_poll(prompt="a cat on a beach", poll_interval_ms=200)
    assert video.status == "completed", video
    probe, frames = probe_mp4(client.videos.download_content(video.id).read())
    assert (probe.num_frames, probe.width, probe.height) == (9, 64, 64) and frames.std() > 0
    # default storage: local files under ./data of the directory serve run was started in
    assert (work / "data" / "videos" / f"{video.id}.mp4").is_file()
    assert (work / "data" / "jobs" / f"{video.id}.json").is_file()


def test_ipv6_listener(served):
    import httpx

    base_url, _ = served
    port = base_url.rsplit(":", 1)[1]
    try:
        resp = httpx.get(f"http://[::1]:{port}/health", timeout=10)
    except httpx.ConnectError:
        pytest.skip("this machine has no IPv6 loopback")
    assert resp.json()["status"] == "ok"


def test_start_up_log_marks_every_phase_the_cold_start_bench_reads(served):
    """bench/start_timeline.py cuts a launcher's log into phases; every marker must be in a real log, in order."""
    from bench.start_timeline import MARKERS, timeline

    _, work = served
    launched_at = float((work / "launched_at").read_text())
    deadline = time.monotonic() + 30  # Ray's log monitor forwards the replicas' lines within a second or two
    while True:
        phases = timeline((work / "serve.log").read_text(errors="replace"), launched_at)
        if len(phases) == len(MARKERS) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert list(phases) == [name for name, _ in MARKERS]
    generator_path = [at for name, at in phases.items() if name != "ingress ready"]
    assert generator_path == sorted(generator_path) and 0 < generator_path[0] and generator_path[-1] < 240
