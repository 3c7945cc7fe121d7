"""The executor patch: FastVideo 0.2.1's Ray executor made buildable, and handed a GPU worker started ahead.

Everything this backend changes in FastVideo's executor is here (compat.py names the versions):
- `ServeRayExecutor`: 0.2.1 leaves `set_log_queue` / `clear_log_queue` abstract on the Ray executor, so
  constructing it raises TypeError; worker logs already reach Ray's log stream, so both are no-ops.
- While it creates its workers, the executor module's `ray` answers `ray.remote(**options)(RayWorkerWrapper)
  .remote(...)` with the prestarted worker when the options match (prestart.adopted, which needs no
  FastVideo and is tested on CPU), and with a new worker otherwise.
- `ServeVideoGenerator` is FastVideo's VideoGenerator choosing `ServeRayExecutor` for the Ray backend
  (FastVideo picks executors by a static lookup). The prestarted worker reaches it through `PRESTARTED`.
Imports fastvideo: import this module only where FastVideo is installed.
"""

from __future__ import annotations

import contextvars
import functools

import fastvideo.worker.ray_distributed_executor as executor_module
from fastvideo import VideoGenerator
from fastvideo.worker.executor import Executor
from fastvideo.worker.ray_distributed_executor import RayDistributedExecutor

from serve_app.backends.fastvideo.prestart import Prestarted, adopted

PRESTARTED: contextvars.ContextVar[Prestarted | None] = contextvars.ContextVar("prestarted", default=None)


class ServeRayExecutor(RayDistributedExecutor):
    def __init__(self, fastvideo_args, *, log_queue=None, prestarted: Prestarted | None = None):
        self.prestarted = prestarted
        super().__init__(fastvideo_args, log_queue=log_queue)

    def _init_workers_ray(self, placement_group, **ray_remote_kwargs):
        with adopted(executor_module, self.prestarted):
            super()._init_workers_ray(placement_group, **ray_remote_kwargs)

    def set_log_queue(self, log_queue) -> None:
        return None

    def clear_log_queue(self) -> None:
        return None


class ServeVideoGenerator(VideoGenerator):
    """VideoGenerator whose Ray executor is `ServeRayExecutor`, with the prestarted worker of `PRESTARTED`."""

    @classmethod
    def from_fastvideo_args(cls, fastvideo_args, *, log_queue=None):
        if fastvideo_args.distributed_executor_backend == "ray":
            executor = functools.partial(ServeRayExecutor, prestarted=PRESTARTED.get())
        else:
            executor = Executor.get_class(fastvideo_args)
        return cls(fastvideo_args=fastvideo_args, executor_class=executor, log_stats=False, log_queue=log_queue)
