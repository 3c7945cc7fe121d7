"""Real servers for the tests: an S3 protocol server (moto, as its own process) and small HTTP servers."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 60, ok=(200,)) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url, timeout=5)
            if resp.status_code in ok:
                return resp
            last = RuntimeError(f"{url} answered {resp.status_code}: {resp.text[:200]}")
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout_s} s: {last}")


class S3Server:
    """moto's S3 server on 127.0.0.1 in a child process: a real S3 protocol peer that can be stopped."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "S3Server":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_http(f"{self.endpoint}/moto-api/", timeout_s=60)
        return self

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            self.proc.wait(10)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


class FileServer:
    """A plain HTTP file server on 127.0.0.1 (stands in for a client's image host)."""

    def __init__(self, root: Path):
        handler = lambda *a, **kw: _QuietHandler(*a, directory=str(root), **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def png_bytes(width: int = 96, height: int = 64, color=(200, 30, 30)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def poll_video(base_url: str, video_id: str, timeout_s: float = 180, headers: dict | None = None) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = httpx.get(f"{base_url}/v1/videos/{video_id}", timeout=10, headers=headers).json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.25)
    raise TimeoutError(f"video {video_id} not finished after {timeout_s} s")


def kill_processes_mentioning(marker: str) -> None:
    """Stop (by PID) every process of ours whose command line holds `marker` (our own Ray temp dir)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if marker in cmdline:
                os.kill(int(entry.name), signal.SIGKILL)


class TcpProxy:
    """A TCP relay on 127.0.0.1 that can be stopped (connections refused, open ones cut) and started again:
    what a storage outage looks like to the service, while the server behind keeps its data."""

    def __init__(self, target_port: int):
        import asyncio

        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.server = None
        self.writers: set = set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def _call(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer):
        import asyncio

        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        self.writers |= {client_writer, upstream_writer}
        await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))
        self.writers -= {client_writer, upstream_writer}

    async def _start(self):
        import asyncio

        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self):
        self.server.close()
        await self.server.wait_closed()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    def start(self) -> "TcpProxy":
        self._call(self._start())
        return self

    def stop(self) -> None:
        self._call(self._stop())


def actor_pid(class_name: str) -> int:
    """PID of the live Ray actor of that class (e.g. 'ServeReplica:faults:Generator')."""
    import ray._private.state

    alive = [a for a in ray._private.state.actors().values()
             if a["ActorClassName"] == class_name and a["State"] == "ALIVE"]
    if len(alive) != 1:
        raise LookupError(f"{len(alive)} live actors named {class_name}")
    return alive[0]["Pid"]


def config_on_free_port(folder: Path) -> tuple[Path, int]:
    """The shipped configs/serve.yaml, unchanged but for its HTTP port (a free one), written into `folder`."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "configs/serve.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    path = Path(folder) / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, port
