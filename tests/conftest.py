"""Session fixtures: the tiny model (built once), a real S3 protocol server, one real Ray Serve cluster."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.procs import free_port, kill_processes_mentioning, wait_http
from tests.support.s3 import S3Server

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")
# Credentials for the local S3 server only; they never leave 127.0.0.1.
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost,::1"

BUCKET = "fastwan-test"


@pytest.fixture(scope="session")
def tiny_model_root(tmp_path_factory) -> Path:
    """Parent folder of the tiny model (built once per session through the project's own builder)."""
    from serve_app.models.tiny import ensure

    cached = os.environ.get("FASTWAN_TEST_TINY_DIR")
    root = Path(cached) if cached else tmp_path_factory.mktemp("tiny")
    ensure(root)
    return root


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server().start()
    server.create_bucket(BUCKET)
    yield server
    server.stop()


@dataclass
class ServeCluster:
    base_url: str
    port: int
    settings_args: dict
    s3: S3Server


@pytest.fixture(scope="session")
def serve_cluster(tiny_model_root, s3_server) -> ServeCluster:
    """One Ray cluster and the real app (tiny model, S3 storage) for the whole session."""
    import ray
    from ray import serve

    from serve_app.app import build_app

    temp_dir = tempfile.mkdtemp(prefix="fwr-", dir="/tmp")  # short: Ray's socket paths have a length limit
    port = free_port()
    args = dict(
        model="tiny", tiny_model_dir=str(tiny_model_root), storage_url=f"s3://{BUCKET}/serve",
        s3_endpoint_url=s3_server.endpoint, s3_region="us-east-1", image_url_allow_private=True,
        max_batch_size=4, batch_wait_timeout_s=0.5, default_width=64, default_height=64, default_num_frames=9,
    )
    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=temp_dir, namespace="serve",
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "2"}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name="fastwan", route_prefix="/")
        wait_http(f"http://127.0.0.1:{port}/ready", timeout_s=120)  # the model loads after the replica starts
        yield ServeCluster(base_url=f"http://127.0.0.1:{port}", port=port, settings_args=args, s3=s3_server)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            kill_processes_mentioning(temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)
