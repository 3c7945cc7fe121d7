"""The playground page as the server sends it: open to browsers, safe headers, only relative URLs.
(What it does in a browser: tests/browser/.)"""

import re
from importlib import resources

import pytest

from tests.support.app import api_client, job_core
from tests.support.fakes import FakeGenerator

STATIC = resources.files("serve_app.api.playground") / "static"


@pytest.fixture
def keyed(tmp_path):
    with api_client(job_core(tmp_path, FakeGenerator(), api_keys=["k-1"])) as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/playground"])
def test_the_page_is_open_with_safe_headers(keyed, path):
    resp = keyed.get(path)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    for asset in re.findall(r'(?:href|src)="(playground-assets/[^"]+)"', resp.text):
        got = keyed.get("/" + asset)
        assert got.status_code == 200 and got.content, asset  # assets load without a key


def test_the_api_behind_it_still_needs_the_key(keyed):
    assert keyed.get("/v1/videos").status_code == 401
    assert keyed.get("/playground-assets/../v1/videos").status_code in (401, 404)  # no way round the guard
    assert keyed.get("/playground-assets/%2e%2e/v1/videos").status_code in (401, 404)
    assert keyed.get("/v1/videos", headers={"Authorization": "Bearer k-1"}).status_code == 200


def test_the_page_makes_no_request_to_another_host():
    for name in ("index.html", "playground.js", "playground.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", text), name
        assert "fetch(\"http" not in text and "fetch('http" not in text and "@import" not in text, name
    js = (STATIC / "playground.js").read_text()
    assert 'const API = "v1/videos";' in js  # relative: works under any prefix and behind Salad's gateway
    assert "localStorage" not in js and "document.cookie" not in js  # only the key, only in sessionStorage
