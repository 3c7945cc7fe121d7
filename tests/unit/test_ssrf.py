"""Image and webhook URLs cannot reach loopback, private, link-local or metadata addresses.

Name resolution is stubbed, so no test ever opens a connection outside 127.0.0.0/8 or ::1: the
"public" and "private" names below resolve to whatever the stub says, and every connection attempt is
recorded, so a refusal is shown to happen before any connection.
"""

import asyncio
import http.server
import threading

import httpx
import pytest

from serve_app.media import fetch
from serve_app.media.fetch import FetchError, FetchPolicy, fetch_url, post_json
from tests.support.images import png_bytes

RESOLVES = {
    "metadata.example": ["169.254.169.254"],
    "private.example": ["10.0.0.1"],
    "mixed.example": ["93.184.216.34", "192.168.1.5"],  # one private answer is enough to refuse
    "v6-local.example": ["::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
}


async def stub_resolver(host, port):
    if host not in RESOLVES:
        raise OSError("unknown host in test")
    return RESOLVES[host]


@pytest.fixture(autouse=True)
def no_real_dns_or_connections(monkeypatch):
    """Stub DNS; record every HTTP request that would go on the wire (and where)."""
    monkeypatch.setattr(fetch, "RESOLVER", stub_resolver)
    sent = []
    real_send = httpx.AsyncClient.send

    async def spy_send(self, request, **kwargs):
        sent.append(str(request.url))
        assert request.url.host in ("127.0.0.1", "::1"), f"test tried to reach {request.url}"
        return await real_send(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", spy_send)
    return sent


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("url, words", [
    ("http://169.254.169.254/latest/meta-data/", "non-public address (169.254.169.254)"),
    ("http://127.0.0.1:9/x.png", "non-public address (127.0.0.1)"),
    ("http://[::1]:9/x.png", "non-public address (::1)"),
    ("http://10.0.0.1/x.png", "non-public address (10.0.0.1)"),
    ("http://metadata.example/x.png", "169.254.169.254"),
    ("http://private.example/x.png", "10.0.0.1"),
    ("http://mixed.example/x.png", "192.168.1.5"),
    ("http://v6-local.example/x.png", "::1"),
    ("http://mapped.example/x.png", "::ffff:127.0.0.1"),
    ("file:///etc/passwd", "only http and https"),
    ("ftp://example.com/x.png", "only http and https"),
    ("http://user:pw@127.0.0.1/x.png", "credentials"),
    ("http://nowhere.example/x.png", "could not be resolved"),
])
def test_refused_before_any_connection(url, words, no_real_dns_or_connections):
    with pytest.raises(FetchError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        run(fetch_url(url, FetchPolicy()))
    assert no_real_dns_or_connections == []  # nothing went on the wire


class Redirector(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self):  # noqa: N802
        if self.path == "/image.png":
            body = png_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(302)
        self.send_header("Location", Redirector.target)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def redirector():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]:1/",
    "http://private.example/", "file:///etc/passwd",
])
def test_redirect_from_an_allowed_server_to_a_private_one_is_refused(redirector, target, no_real_dns_or_connections):
    Redirector.target = target
    policy = FetchPolicy(allowed_hosts=["127.0.0.1"])  # loopback explicitly allowed for the first hop only
    with pytest.raises(FetchError, match="non-public|only http"):
        run(fetch_url(f"{redirector}/go", policy))
    assert len(no_real_dns_or_connections) == 1  # the allowed hop; the redirect target never


def test_allowed_host_and_redirect_within_it(redirector):
    Redirector.target = f"{redirector}/image.png"
    policy = FetchPolicy(allowed_hosts=["127.0.0.1"])
    assert run(fetch_url(f"{redirector}/go", policy)) == png_bytes()
    with pytest.raises(FetchError, match="non-public"):  # the same server without the allow-list
        run(fetch_url(f"{redirector}/image.png", FetchPolicy()))


def test_redirect_limit_and_size_cap(redirector):
    Redirector.target = f"{redirector}/go"  # redirects to itself forever
    with pytest.raises(FetchError, match="redirected more than 3"):
        run(fetch_url(f"{redirector}/go", FetchPolicy(allowed_hosts=["127.0.0.1"])))
    with pytest.raises(FetchError, match="larger than 10 bytes"):
        run(fetch_url(f"{redirector}/image.png", FetchPolicy(allowed_hosts=["127.0.0.1"], max_bytes=10)))


def test_webhook_posts_are_checked_the_same_way(no_real_dns_or_connections):
    with pytest.raises(FetchError, match="169.254.169.254"):
        run(post_json("http://metadata.example/hook", b"{}", {}, FetchPolicy(max_redirects=0)))
    assert no_real_dns_or_connections == []


def test_api_refuses_private_image_urls_with_a_400(tmp_path):
    from tests.support.app import api_client, job_core
    from tests.support.fakes import FakeGenerator

    with api_client(job_core(tmp_path, FakeGenerator())) as client:
        for url in ("http://169.254.169.254/", "http://metadata.example/x.png", "file:///etc/passwd"):
            resp = client.post("/v1/videos", json={"prompt": "x", "input_reference": url})
            assert resp.status_code == 400 and resp.json()["error"]["param"] == "input_reference"
            resp = client.post("/generate", json={"prompt": "x", "image_url": url, "num_frames": 9,
                                                  "width": 64, "height": 64})
            assert resp.status_code == 200 and resp.json()["status"] == "failed"  # the old contract's answer
            assert resp.json()["error"].startswith("image_url: ")
            resp = client.post("/v1/videos", json={"prompt": "x", "webhook_url": url})
            assert resp.status_code == 400 and resp.json()["error"]["param"] == "webhook_url"
