from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from serve_app.app import generator_options
from serve_app.models.layout import HF_MODEL_ID
from serve_app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_env_overrides_yaml_args(monkeypatch):
    monkeypatch.setenv("FASTWAN_STORAGE_URL", "s3://from-env/prefix")
    monkeypatch.setenv("FASTWAN_MAX_BATCH_SIZE", "7")
    s = Settings(storage_url="file://./from-yaml", max_batch_size=2, video_crf=20)
    assert s.storage_url == "s3://from-env/prefix"
    assert s.max_batch_size == 7
    assert s.video_crf == 20  # not in env: the yaml arg stays


def test_unknown_arg_and_bad_values_are_rejected():
    with pytest.raises(ValidationError, match="extra"):
        Settings(max_batchsize=3)
    with pytest.raises(ValidationError, match="file:// or s3://"):
        Settings(storage_url="gs://bucket")
    with pytest.raises(ValidationError):
        Settings(video_crf=99)


def test_resolve_without_gpu_uses_tiny_model_on_cpu():
    s = Settings().resolve(gpus=0)
    assert (s.backend, s.model, s.device) == ("diffusers", "tiny", "cpu")
    assert (s.default_width, s.default_height, s.default_num_frames) == (256, 256, 17)


def test_resolve_with_gpu_uses_the_real_model_and_720p_defaults():
    s = Settings().resolve(gpus=1)
    assert s.device == "cuda" and s.model == HF_MODEL_ID
    assert s.backend in ("fastvideo", "diffusers")  # fastvideo only where it is installed
    assert (s.default_width, s.default_height, s.default_num_frames) == (1280, 704, 121)


def test_resolve_keeps_explicit_choices():
    s = Settings(backend="diffusers", model="/models/x", device="cpu", default_num_frames=33).resolve(gpus=1)
    assert (s.backend, s.model, s.device, s.default_num_frames) == ("diffusers", "/models/x", "cpu", 33)


def test_generator_options_follow_the_hardware():
    cpu = generator_options(Settings().resolve(gpus=0))
    assert cpu["ray_actor_options"] == {"num_cpus": 1}
    ray_gpu = generator_options(Settings(backend="fastvideo", device="cuda").resolve(gpus=1))
    assert ray_gpu["ray_actor_options"]["num_gpus"] == 0
    assert ray_gpu["placement_group_bundles"] == [{"CPU": 1, "GPU": 1}]
    assert ray_gpu["placement_group_strategy"] == "STRICT_PACK"
    mp_gpu = generator_options(Settings(backend="fastvideo", fastvideo_executor="mp", device="cuda").resolve(gpus=1))
    assert mp_gpu["ray_actor_options"]["num_gpus"] == 1 and "placement_group_bundles" not in mp_gpu


def test_shipped_serve_yaml_is_valid():
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((ROOT / "configs/serve.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    app = config["applications"][0]
    assert app["import_path"] == "serve_app.app:build_app"
    Settings(**app["args"])  # every arg is a known setting
    ingress = next(d for d in app["deployments"] if d["name"] == "Ingress")
    from serve_app.jobs.dispatch import BatchConfig

    BatchConfig.model_validate(ingress["user_config"])
    assert config["http_options"]["host"] == "::"


def test_queue_and_buffer_refuse_links_to_localhost():
    from serve_app.modes import check_links_reach_clients

    for mode in ("queue", "buffer"):
        with pytest.raises(ValueError, match="localhost.*B2_KEY_ID.*FASTWAN_PUBLIC_BASE_URL"):
            check_links_reach_clients(Settings(worker_mode=mode, orchestrator_base_url="http://o"))
        check_links_reach_clients(Settings(worker_mode=mode, public_base_url="https://my.salad.cloud"))
        check_links_reach_clients(Settings(worker_mode=mode, storage_url="s3://bucket/p"))
    check_links_reach_clients(Settings())  # the HTTP API: its clients come to this service anyway


def test_b2_variables_become_s3_storage_with_the_old_links(monkeypatch):
    from serve_app.storage.b2 import apply_b2

    for name, value in {"B2_KEY_ID": "k", "B2_APP_KEY": "secret", "B2_BUCKET_NAME": "videos",
                        "B2_S3_ENDPOINT": "https://s3.us-west-004.backblazeb2.com",
                        "B2_DOWNLOAD_URL": "https://f005.backblazeb2.com"}.items():
        monkeypatch.setenv(name, value)
    s = apply_b2(Settings())
    assert (s.storage_url, s.s3_endpoint_url, s.s3_region) == (
        "s3://videos/avatar/outputs", "https://s3.us-west-004.backblazeb2.com", "us-west-004")
    assert s.public_video_base_url == "https://f005.backblazeb2.com/file/videos" and s.legacy_object_names
    assert s.s3_access_key_id.get_secret_value() == "k" and s.s3_secret_access_key.get_secret_value() == "secret"
    monkeypatch.setenv("FASTWAN_STORAGE_URL", "s3://elsewhere/x")
    assert apply_b2(Settings()).storage_url == "s3://elsewhere/x"  # an explicit storage wins
