"""Small real HTTP peers for the tests (an image host, a TCP relay that can go down) and a job poller."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import httpx

from devtools.procs import free_port


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


def poll_video(base_url: str, video_id: str, timeout_s: float = 180, headers: dict | None = None) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = httpx.get(f"{base_url}/v1/videos/{video_id}", timeout=10, headers=headers).json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.25)
    raise TimeoutError(f"video {video_id} not finished after {timeout_s} s")
