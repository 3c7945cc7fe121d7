"""Ports, HTTP readiness and process clean-up for anything that starts the service as a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
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


def kill_session(session_id: int) -> int:
    """SIGKILL every process of a session (what a container's death does to them all at once): Ray's processes
    keep the session of the process that started Ray, whatever title they give themselves. Returns how many."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            if int(fields[3]) == session_id:  # state, ppid, pgrp, session
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def stop_service(proc, ray_tmp: str | None = None, sig: int = signal.SIGTERM, timeout_s: float = 60) -> None:
    """Ask a service started in its own session to stop (`sig`), give it `timeout_s`, then kill whatever of its
    session (and of its Ray temp dir) is left."""
    proc.send_signal(sig)
    with contextlib.suppress(Exception):
        proc.wait(timeout_s)
    kill_session(proc.pid)
    if ray_tmp:
        kill_processes_mentioning(ray_tmp)
