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


def kill_processes_mentioning(marker: str) -> int:
    """Stop (by PID) every process of ours whose command line or environment holds `marker` (our own Ray temp
    dir: every process of that Ray inherits RAY_TMPDIR, whatever title it gives itself). Returns how many."""
    me = os.getpid()

    def mentions(entry: Path) -> bool:
        return any(marker.encode() in (entry / name).read_bytes() for name in ("cmdline", "environ"))

    return _kill_until_none_left(lambda entry: int(entry.name) != me and mentions(entry))


def kill_session(session_id: int) -> int:
    """SIGKILL every process of a session (what a container's death does to them all at once): Ray's processes
    keep the session of the process that started Ray, whatever title they give themselves. Returns how many."""

    def in_session(entry: Path) -> bool:
        stat = (entry / "stat").read_text()
        state, _, _, session = stat[stat.rindex(")") + 2:].split()[:4]  # after "pid (comm) "
        return int(session) == session_id and state != "Z"  # a zombie is dead already, only not yet reaped

    return _kill_until_none_left(in_session)


def _kill_until_none_left(selected, passes: int = 20) -> int:
    """SIGKILL the processes `selected(/proc entry)` picks, again until a pass finds none: a process that forks
    while one pass runs (Ray's raylet starting a worker) leaves a child the pass did not see."""
    killed = 0
    for _ in range(passes):
        found = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                if selected(entry):
                    os.kill(int(entry.name), signal.SIGKILL)
                    found += 1
        if not found:
            break
        killed += found
        time.sleep(0.1)
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
