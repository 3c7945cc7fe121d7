"""Start FastVideo's GPU worker before the replica imports FastVideo, so the two imports overlap.

FastVideo's Ray executor creates its GPU worker only after the replica has imported torch and
FastVideo, and the new worker process then imports them again, one after the other. `prestart_worker`
creates the worker actor first, on the GPU bundle of the replica's placement group with the options
FastVideo uses; it imports FastVideo while the replica does. When the executor then creates its
worker, executor.py hands it this actor, which builds FastVideo's own RayWorkerWrapper inside itself
and forwards every call to it: the rest of FastVideo's start-up runs unchanged. The worker's import ends
seconds before the replica's; `early` is work it starts right after it, in the meantime (early_vae.py).
Imports only Ray: it runs before FastVideo is loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
from dataclasses import dataclass

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

logger = logging.getLogger(__name__)

FASTVIDEO_WRAPPER = "fastvideo.worker.ray_utils:RayWorkerWrapper"


class PrestartedWorker:
    """The GPU worker actor: imports the wrapper class at once, builds the wrapper when adopted."""

    def __init__(self, wrapper_class: str = FASTVIDEO_WRAPPER, warm_compile_pool: bool = False,
                 early: tuple[str, dict] | None = None):
        module, name = wrapper_class.split(":")
        self.wrapper_cls = getattr(importlib.import_module(module), name)  # the slow import
        self.wrapper = None
        self.warm_compile_pool = warm_compile_pool
        if early is not None:
            start_early(*early)

    def adopt(self, fastvideo_args, rpc_rank: int) -> None:
        self.wrapper = self.wrapper_cls(fastvideo_args=fastvideo_args, rpc_rank=rpc_rank)
        if self.warm_compile_pool:  # now, while the weights load, not at the warm-up's first compile
            start_compile_workers()

    # what FastVideo's executor calls on its workers
    def get_node_ip(self) -> str:
        return self.wrapper.get_node_ip()

    def execute_method(self, method, *args, **kwargs):
        return self.wrapper.execute_method(method, *args, **kwargs)


def start_early(target: str, kwargs: dict) -> bool:
    """Call `module:function(**kwargs)`, which starts its own thread; a failure is logged, the start goes on."""
    try:
        module, name = target.split(":")
        getattr(importlib.import_module(module), name)(**kwargs)
        return True
    except Exception:  # noqa: BLE001 - early work only saves time
        logger.exception("early start-up work %s failed; starting without it", target)
        return False


def start_compile_workers() -> bool:
    """Start torch.compile's compile workers now, at low CPU priority (torch starts them at the first compile).

    Started here they come up while the weights load instead of inside the warm-up's first compile; at
    nice 10 they give way to the proxy, the ingress and the GPU worker's own threads.
    """
    try:
        from torch._inductor.async_compile import maybe_warm_pool
        from torch.utils._triton import has_triton_package
    except ImportError:
        return False
    if not has_triton_package():  # the pool compiles Triton kernels only: a CPU-only torch starts none
        return False

    def start() -> None:
        os.nice(10)  # this thread only (Linux): the processes it starts inherit it, the worker's other threads do not
        maybe_warm_pool()

    thread = threading.Thread(target=start, name="compile-workers")
    thread.start()
    thread.join()
    return True


def worker_options(placement_group, bundle_index: int, num_gpus: float = 1.0) -> dict:
    """The Ray options FastVideo's executor gives its GPU worker (ray_distributed_executor, 0.2.1)."""
    return {"num_cpus": 0, "num_gpus": num_gpus, "scheduling_strategy": PlacementGroupSchedulingStrategy(
        placement_group=placement_group, placement_group_capture_child_tasks=True,
        placement_group_bundle_index=bundle_index)}


def same_options(a: dict, b: dict) -> bool:
    def key(options: dict):
        strategy = options.get("scheduling_strategy")
        placement = None
        if isinstance(strategy, PlacementGroupSchedulingStrategy):
            placement = (strategy.placement_group.id, strategy.placement_group_bundle_index,
                         strategy.placement_group_capture_child_tasks)
        rest = {k: v for k, v in options.items() if k != "scheduling_strategy"}
        return placement, sorted(rest.items())

    return key(a) == key(b)


@dataclass
class Prestarted:
    handle: ray.actor.ActorHandle
    options: dict
    state: str = "started"  # -> "adopted" or "not used: <why>"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            ray.kill(self.handle)


def prestart_worker(wrapper_class: str = FASTVIDEO_WRAPPER, device_key: str = "GPU",
                    warm_compile_pool: bool = False, early: tuple[str, dict] | None = None) -> Prestarted | None:
    """Start the worker on the first `device_key` bundle of this actor's placement group (None outside one);
    `early`: ("module:function", kwargs) it calls after its import (start_early)."""
    group = ray.util.get_current_placement_group() if ray.is_initialized() else None
    if group is None:
        return None
    bundles = [i for i, bundle in enumerate(group.bundle_specs) if bundle.get(device_key, 0)]
    if not bundles:
        return None
    options = worker_options(group, bundles[0], num_gpus=1.0 if device_key == "GPU" else 0)
    handle = ray.remote(PrestartedWorker).options(**options).remote(wrapper_class, warm_compile_pool, early)
    return Prestarted(handle=handle, options=options)


class _AdoptingRay:
    """Stands in for `ray` in FastVideo's executor module while it creates its workers."""

    def __init__(self, real, prestarted: Prestarted):
        self._real, self._prestarted = real, prestarted

    def __getattr__(self, name):
        return getattr(self._real, name)

    def remote(self, *args, **options):
        prestarted = self._prestarted
        if args or prestarted.state != "started" or not same_options(options, prestarted.options):
            if prestarted.state == "started":
                prestarted.state = f"not used: FastVideo asked for {options}"
            return self._real.remote(*args, **options)

        class Adopt:  # ray.remote(**options)(RayWorkerWrapper).remote(fastvideo_args=..., rpc_rank=...)
            @staticmethod
            def remote(*, fastvideo_args, rpc_rank):
                prestarted.handle.adopt.remote(fastvideo_args, rpc_rank)  # runs after its import: calls are ordered
                prestarted.state = "adopted"
                return prestarted.handle

        return lambda cls: Adopt


@contextlib.contextmanager
def adopted(executor_module, prestarted: Prestarted | None):
    """Inside, the module's `ray.remote(**options)(cls).remote(...)` gives the prestarted worker if the options match.

    executor.py wraps FastVideo's worker creation in this: the one place its executor module is changed.
    """
    if prestarted is None:
        yield
        return
    real = executor_module.ray
    executor_module.ray = _AdoptingRay(real, prestarted)
    try:
        yield
    finally:
        executor_module.ray = real
        if prestarted.state != "adopted":
            if prestarted.state == "started":
                prestarted.state = "not used: FastVideo created no worker"
            logger.warning("prestarted GPU worker %s; stopping it", prestarted.state)
            prestarted.stop()
