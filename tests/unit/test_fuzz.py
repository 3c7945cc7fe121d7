"""Property-based fuzzing of the HTTP API from its own OpenAPI document: no input may cause a 5xx, and
whatever the document calls invalid is refused (so generated clients, fuzzers and the service agree).

schemathesis generates requests for every operation (valid and invalid bodies, headers, paths), at
least 1000 cases in all, of which at least 200 invalid by the document. The app runs in-process with the fake generator; name resolution is stubbed
so generated image/webhook URLs never reach the network.
"""

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from serve_app.api.app import create_api  # noqa: E402
from serve_app.media import fetch  # noqa: E402
from tests.support.app import job_core  # noqa: E402
from tests.support.fakes import FakeGenerator  # noqa: E402

CASES_PER_OPERATION = 150  # x 9 operations: over 1000 cases


async def no_dns(host, port):
    raise OSError("no DNS in the fuzz test")


def build_app(tmp_dir):
    core = job_core(tmp_dir, FakeGenerator(), default_width=32, default_height=32, default_num_frames=5,
                    max_width=256, max_height=256, max_num_frames=33, max_wait_s=1)
    return create_api(core.service, core.settings)


def _tmp():
    import tempfile

    return tempfile.mkdtemp(prefix="fwfuzz-")


fetch.RESOLVER = no_dns  # for this module's app; the SSRF tests install their own stub per test
# valid and invalid data (by the document): the service must refuse what its own document calls invalid
CONFIG = schemathesis.config.SchemathesisConfig.from_dict({"generation": {"mode": "all"}})
schema = schemathesis.openapi.from_asgi("/openapi.json", build_app(_tmp()), config=CONFIG)
counted = {"cases": 0}


@schema.parametrize()
@settings(max_examples=CASES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_causes_a_server_error(case):
    """No 5xx; and what the OpenAPI document calls invalid is refused, with a status code it documents."""
    from schemathesis.checks import negative_data_rejection, not_a_server_error, status_code_conformance

    counted["cases"] += 1
    mode = str(case.meta.generation.mode) if case.meta else "unknown"
    counted[mode] = counted.get(mode, 0) + 1
    checks = [not_a_server_error, status_code_conformance]
    if case.path != "/generate":  # the old worker's contract answers every failure 200 `failed`, by design
        checks.append(negative_data_rejection)
    response = case.call_and_validate(checks=checks)
    if case.path == "/generate" and response.status_code == 200 and mode == "negative":
        assert response.json()["status"] == "failed" and response.json()["error"], response.text


def test_at_least_1000_cases_ran():
    """Runs after the fuzz test in this module (pytest keeps file order)."""
    print(f"\nschemathesis cases run: {counted}")
    assert counted["cases"] >= 1000 and counted.get("negative", 0) >= 200, counted
