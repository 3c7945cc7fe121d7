"""The GPU worker started ahead of FastVideo's import is the one FastVideo's executor gets (real Ray).

FastVideo itself needs CUDA, so a stand-in takes RayWorkerWrapper's place and the executor's
worker creation (`ray.remote(**options)(RayWorkerWrapper).remote(...)`) is replayed as FastVideo 0.2.1
writes it; on the GPU, scripts/gpu_serve_check.py checks that the real service adopted its worker.
"""

from __future__ import annotations

import time
import types

import pytest
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from serve_app.backends.fastvideo.prestart import Prestarted, adopted, prestart_worker, worker_options

STAND_IN = "tests.support.fakes:StandInWorkerWrapper"


@ray.remote(num_cpus=0)
class Replica:
    """Plays the generator replica: runs inside the placement group, as Serve places it."""

    def start_like_fastvideo(self, bundle_index: int) -> dict:
        from tests.support.fakes import StandInWorkerWrapper

        prestarted = prestart_worker(STAND_IN, device_key="CPU")
        module = types.SimpleNamespace(ray=ray)  # FastVideo's executor module, as far as worker creation goes
        options = worker_options(ray.util.get_current_placement_group(), bundle_index, num_gpus=0)
        with adopted(module, prestarted):
            worker = module.ray.remote(**options)(StandInWorkerWrapper).remote(fastvideo_args={"model": "m"},
                                                                             rpc_rank=0)
            assert module.ray.get is ray.get  # everything but worker creation is the real Ray
        assert module.ray is ray  # restored
        answer = ray.get(worker.execute_method.remote("init_device", 7))
        return {"state": prestarted.state, "same": worker is prestarted.handle, "answer": answer,
                "prestarted_stopped": None if prestarted.state == "adopted" else _stopped(prestarted)}

    def start_workers_like_fastvideo(self, bundles: list[int]) -> dict:
        """FastVideo's executor creating one worker per GPU bundle, rank by rank (a replica of several GPUs)."""
        from tests.support.fakes import StandInWorkerWrapper

        prestarted = prestart_worker(STAND_IN, device_key="CPU")
        module = types.SimpleNamespace(ray=ray)
        group = ray.util.get_current_placement_group()
        with adopted(module, prestarted):
            workers = [module.ray.remote(**worker_options(group, bundle, num_gpus=0))(StandInWorkerWrapper).remote(
                fastvideo_args={"model": "m"}, rpc_rank=rank) for rank, bundle in enumerate(bundles)]
        answers = ray.get([worker.execute_method.remote("init_device") for worker in workers])
        return {"state": prestarted.state, "prestarted_rank": [w is prestarted.handle for w in workers],
                "ranks": [answer["rpc_rank"] for answer in answers], "pids": [answer["pid"] for answer in answers]}

    def start_with_early_work(self, early: tuple[str, dict]) -> dict:
        """The prestarted worker does `early` after its import, before FastVideo adopts it, whatever it raises."""
        import os

        from tests.support.fakes import StandInWorkerWrapper

        prestarted = prestart_worker(STAND_IN, device_key="CPU", early=early)
        module = types.SimpleNamespace(ray=ray)
        options = worker_options(ray.util.get_current_placement_group(), 0, num_gpus=0)
        with adopted(module, prestarted):
            worker = module.ray.remote(**options)(StandInWorkerWrapper).remote(fastvideo_args={"model": "m"},
                                                                             rpc_rank=0)
        answer = ray.get(worker.execute_method.remote("init_device"))
        return {"state": prestarted.state, "worker_pid": answer["pid"], "replica_pid": os.getpid()}

    def outside_a_group(self):
        return prestart_worker(STAND_IN, device_key="CPU")


def _stopped(prestarted: Prestarted, within_s: float = 30) -> bool:
    """True once the actor is gone (a kill lands asynchronously: ask again until `within_s`)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            ray.get(prestarted.handle.get_node_ip.remote(), timeout=within_s)
        except ray.exceptions.RayActorError:
            return True
        except AttributeError:  # not adopted: no wrapper to answer with, but the actor is there
            pass
        time.sleep(0.5)
    return False


@pytest.fixture
def replica(serve_cluster):
    group = placement_group([{"CPU": 0.1}, {"CPU": 0.1}])
    ray.get(group.ready(), timeout=60)
    actor = Replica.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
        placement_group=group, placement_group_capture_child_tasks=True, placement_group_bundle_index=0)).remote()
    yield actor
    ray.kill(actor)
    remove_placement_group(group)


def test_fastvideo_gets_the_prestarted_worker(replica):
    out = ray.get(replica.start_like_fastvideo.remote(bundle_index=0), timeout=120)
    assert out["state"] == "adopted" and out["same"]
    # the wrapper inside was built with the executor's arguments and answers the executor's calls
    assert out["answer"]["method"] == "init_device" and out["answer"]["args"] == (7,)
    assert out["answer"]["fastvideo_args"] == {"model": "m"} and out["answer"]["rpc_rank"] == 0


def test_other_options_get_a_new_worker_and_the_prestarted_one_stops(replica):
    out = ray.get(replica.start_like_fastvideo.remote(bundle_index=1), timeout=120)
    assert out["state"].startswith("not used: FastVideo asked for") and not out["same"]
    assert out["answer"]["fastvideo_args"] == {"model": "m"}  # FastVideo's own worker, built the usual way
    assert out["prestarted_stopped"]


def test_a_replica_of_several_gpus_gets_the_prestarted_worker_as_rank_0_and_new_ones_after_it(replica):
    out = ray.get(replica.start_workers_like_fastvideo.remote(bundles=[0, 1]), timeout=120)
    assert out["state"] == "adopted" and out["prestarted_rank"] == [True, False]
    assert out["ranks"] == [0, 1] and len(set(out["pids"])) == 2  # two worker processes, one per bundle


def test_the_prestarted_worker_does_its_early_work_after_its_import(replica, tmp_path):
    marker = tmp_path / "early"
    out = ray.get(replica.start_with_early_work.remote(
        ("tests.support.fakes:record_early_work", {"path": str(marker)})), timeout=120)
    assert out["state"] == "adopted"
    assert int(marker.read_text()) == out["worker_pid"] != out["replica_pid"]  # in the worker, not the replica


def test_failed_early_work_leaves_the_worker_working(replica, tmp_path):
    for early in (("tests.support.fakes:record_early_work", {"path": str(tmp_path / "x"), "fail": True}),
                  ("tests.support.no_such_module:start", {})):
        out = ray.get(replica.start_with_early_work.remote(early), timeout=120)
        assert out["state"] == "adopted" and out["worker_pid"] != out["replica_pid"]
    assert not (tmp_path / "x").exists()


def test_no_prestart_outside_a_placement_group(serve_cluster):
    actor = Replica.remote()
    try:
        assert ray.get(actor.outside_a_group.remote(), timeout=60) is None
    finally:
        ray.kill(actor)


def test_compile_workers_start_at_low_priority_and_leave_the_caller_alone():
    """The GPU worker starts torch.compile's workers while its weights load, at nice 10."""
    import os
    import subprocess

    from serve_app.backends.fastvideo.prestart import start_compile_workers

    if not start_compile_workers():
        pytest.skip("this torch has no Triton, so no compile-worker pool (CPU-only builds)")
    deadline, children = time.monotonic() + 60, ""
    while time.monotonic() < deadline and "compile_worker" not in children:
        children = subprocess.run(["ps", "-ww", "-o", "ni=,args=", "--ppid", str(os.getpid())], capture_output=True,
                                  text=True).stdout
        time.sleep(0.2)
    workers = [line.split(None, 1) for line in children.splitlines() if "compile_worker" in line]
    assert workers and all(int(nice) == 10 for nice, _ in workers), children
    assert os.nice(0) == 0  # the calling thread keeps its priority
