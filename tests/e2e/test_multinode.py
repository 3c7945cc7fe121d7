"""The shipped configs/serve.yaml on a real multi-node Ray cluster on one machine (`ray start --head` and two
`ray start --address` workers, each node a process session of its own): the generator replicas go to the
worker nodes (the resource they advertise, `FASTWAN_GENERATOR_RESOURCES`), jobs are served, and when the
worker node running a job is killed outright, the job completes on the other one."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from devtools.procs import free_port, kill_processes_mentioning, kill_session, stop_service, wait_http
from tests.support.config import config_on_free_port

pytestmark = pytest.mark.e2e
RAY = str(Path(sys.executable).with_name("ray"))


def ports(*names) -> list[str]:
    return [f"--{name}={free_port()}" for name in names]


class Node:
    def __init__(self, args: list[str], env: dict, log: Path):
        self.proc = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], env=env,
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        kill_session(self.proc.pid)  # the node's raylet, its object store and every worker on it


def nodes_by_resource(address: str, env: dict, expect: int) -> dict[str, str]:
    """node id -> the custom resource naming it, read from the cluster by a short driver once `expect` are up."""
    code = ("import json, time, ray; ray.init(address=%r, log_to_driver=False)\n"
            "for _ in range(240):\n"
            "    nodes = [n for n in ray.nodes() if n['Alive']]\n"
            "    if len(nodes) >= %d: break\n"
            "    time.sleep(0.5)\n"
            "print(json.dumps({n['NodeID']: sorted(n['Resources']) for n in nodes}))" % (address, expect))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    nodes = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(nodes) >= expect, (nodes, out.stderr[-2000:])
    return {node: next((r for r in resources if r.startswith("node_")), "head") for node, resources in nodes.items()}


def test_replicas_on_worker_nodes_and_a_node_lost_mid_job(tiny_model_root, tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="fwm-", dir="/tmp")
    # On a cluster the app is built on the head node, so FASTWAN_* variables go where the nodes start (as a
    # container's environment would), not only to `serve run`; storage must be one place every node reaches.
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "disabled",
           "FASTWAN_TINY_MODEL_DIR": str(tiny_model_root), "FASTWAN_SELFCHECK": "false",
           "FASTWAN_GENERATOR_RESOURCES": '{"fastwan_worker": 1}', "FASTWAN_STORAGE_URL": f"file://{tmp_path}/data",
           "FASTWAN_DEFAULT_WIDTH": "64", "FASTWAN_DEFAULT_HEIGHT": "64", "FASTWAN_DEFAULT_NUM_FRAMES": "9"}
    gcs_port = free_port()
    address = f"127.0.0.1:{gcs_port}"
    head = Node(["--head", f"--port={gcs_port}", "--num-cpus=1", "--include-dashboard=false",
                 f"--temp-dir={ray_tmp}", *ports("ray-client-server-port", "dashboard-agent-listen-port",
                                                 "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                                 "metrics-export-port", "node-manager-port", "object-manager-port")],
                env, tmp_path / "head.log")
    workers, service = {}, None
    try:
        nodes_by_resource(address, env, expect=1)
        for count, name in enumerate(("node_a", "node_b"), start=2):  # one at a time: each joins before the next
            workers[name] = Node([f"--address={address}", "--num-cpus=2",
                                  f"--resources={json.dumps({'fastwan_worker': 1, name: 1})}",
                                  *ports("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                         "runtime-env-agent-port", "metrics-export-port", "node-manager-port",
                                         "object-manager-port")], env, tmp_path / f"{name}.log")
            nodes_by_resource(address, env, expect=count)
        config, port = config_on_free_port(tmp_path)
        base = f"http://127.0.0.1:{port}"
        serve_env = {**env, "RAY_ADDRESS": address}
        service = subprocess.Popen([sys.executable, "-m", "serve_app.launch", str(config)], cwd=tmp_path,
                                   env=serve_env, stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        wait_http(f"{base}/ready", timeout_s=240)
        placed = nodes_by_resource(address, env, expect=3)
        first = httpx.post(f"{base}/v1/videos", timeout=30, headers={"Prefer": "wait=60"},
                           json={"prompt": "a served job"}).json()
        assert first["status"] == "completed", first
        assert placed[first["metrics"]["node"]] in ("node_a", "node_b")  # a worker node, never the head
        long = httpx.post(f"{base}/v1/videos", timeout=30, json={
            "prompt": "a long one", "size": "256x256", "num_frames": 17, "num_inference_steps": 40}).json()
        deadline = time.monotonic() + 120
        record_file = tmp_path / "data" / "jobs" / f"{long['id']}.json"
        # The job's record names its node once a replica has it; it is stored a moment after the job starts.
        while not json.loads(record_file.read_text())["metrics"].get("node"):
            assert time.monotonic() < deadline, record_file.read_text()
            time.sleep(0.2)
        record = json.loads(record_file.read_text())
        assert record["status"] == "in_progress", record
        running_on = placed[record["metrics"]["node"]]
        workers[running_on].kill()  # the node running the job, outright
        deadline = time.monotonic() + 240
        while (job := httpx.get(f"{base}/v1/videos/{long['id']}", timeout=10).json())["status"] not in (
                "completed", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
        record = json.loads((tmp_path / "data" / "jobs" / f"{long['id']}.json").read_text())
    finally:
        if service is not None:
            stop_service(service, sig=signal.SIGINT)
        for node in [*workers.values(), head]:
            node.kill()
        kill_processes_mentioning(ray_tmp)
    assert job["status"] == "completed", (job, (tmp_path / "serve.log").read_text()[-3000:])
    other = {"node_a": "node_b", "node_b": "node_a"}[running_on]
    assert placed.get(record["metrics"]["node"]) == other and record["attempts"] == 2, record
    assert (tmp_path / "data" / "videos" / f"{long['id']}.mp4").stat().st_size > 0
