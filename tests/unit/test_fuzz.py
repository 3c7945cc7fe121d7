"""Property-based fuzzing of the HTTP API from its own OpenAPI document: no input may cause a 5xx.

schemathesis generates requests for every operation (valid and invalid bodies, headers, paths), at
least 1000 cases in all. The app runs in-process with the fake generator; name resolution is stubbed
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
schema = schemathesis.openapi.from_asgi("/openapi.json", build_app(_tmp()))
counted = {"cases": 0}


@schema.parametrize()
@settings(max_examples=CASES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_causes_a_server_error(case):
    counted["cases"] += 1
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"


def test_at_least_1000_cases_ran():
    """Runs after the fuzz test in this module (pytest keeps file order)."""
    print(f"\nschemathesis cases run: {counted['cases']}")
    assert counted["cases"] >= 1000, counted
