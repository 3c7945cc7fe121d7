"""A real S3 protocol server for the tests: moto's, as its own process on 127.0.0.1, that can be paused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from devtools.procs import free_port, wait_http


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
