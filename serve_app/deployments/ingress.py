"""The ingress deployment: where the parts are put together, around a Serve handle to the generator.

storage -> job core (jobs/core.py: dispatcher, runner, recovery, service) -> the HTTP app (api/) ->
the worker mode (modes/). The dispatcher's batch values are live: edit the Ingress `user_config` in
serve.yaml and re-apply; Serve calls `reconfigure` without restarting the replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.api.app import create_api
from serve_app.backends import backend_class
from serve_app.api.schemas import VideoObject
from serve_app.contracts import GenerationParams, GeneratorEvent, GeneratorStatus, ResultEvent, StartedEvent
from serve_app.jobs.core import build_job_core
from serve_app.jobs.dispatch import BatchConfig
from serve_app.jobs.pools import PoolLoad, choose_pool
from serve_app.jobs.store import JobStore, KeyLayout
from serve_app.modes import worker_mode
from serve_app.settings import Settings
from serve_app.settings.sections import ReplicaPool
from serve_app.storage import open_storage

logger = logging.getLogger("ray.serve")


def render_video(job) -> dict:
    """What webhooks carry: the same job object GET /v1/videos/{id} returns."""
    return VideoObject.from_record(job).model_dump(mode="json")


class ServeGeneratorClient:
    """The job core's view of the generator deployments (one a pool, `replica_pools`): each trip goes to the pool
    that would finish it first (jobs/pools.py), statuses come from the board."""

    def __init__(self, handles: list[DeploymentHandle], board: DeploymentHandle, pools: list[ReplicaPool]):
        self.handles, self.board = handles, board
        self.loads = [PoolLoad(width=p.gpus_per_replica, replicas=p.num_replicas) for p in pools]

    async def stream(self, batch: list[GenerationParams]) -> AsyncIterator[GeneratorEvent]:
        index = choose_pool(self.loads) if len(self.handles) > 1 else 0
        load, started = self.loads[index], time.monotonic()
        load.in_flight += 1
        response = self.handles[index].options(stream=True).generate.remote(batch)
        try:
            async for event in response:
                if isinstance(event, StartedEvent):  # a replica took it: its generation starts now
                    started = time.monotonic()
                elif isinstance(event, ResultEvent):
                    load.finished((time.monotonic() - started) / max(1, len(batch)))
                yield event
        finally:
            load.in_flight -= 1
            response.cancel()  # a no-op once the call has finished; stops it when the caller gave up

    async def statuses(self, timeout_s: float) -> dict[str, GeneratorStatus]:
        response = self.board.read.remote()

        async def call():
            return await response

        try:
            return await asyncio.wait_for(call(), timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            response.cancel()
            raise


@serve.deployment(max_ongoing_requests=512, graceful_shutdown_timeout_s=60)
@serve.ingress()
class Ingress:
    def __init__(self, generators: list[DeploymentHandle], board: DeploymentHandle, settings: Settings):
        self.settings = settings
        storage = open_storage(settings.storage)
        layout = KeyLayout(internal="fastwan/" if settings.legacy_object_names else "",
                           legacy_names=settings.legacy_object_names)
        store = JobStore(storage, settings.storage_retry_s, layout)
        store.ensure_atomic_creates(single_writer=settings.storage_single_writer)
        self.core = build_job_core(settings, store,
                                   ServeGeneratorClient(generators, board, settings.pools()), render=render_video,
                                   batches=backend_class(settings).batches)
        self.mode = worker_mode(settings, self.core.service)
        logger.info("ingress ready: storage %s, worker mode %s", storage.url, settings.worker_mode)

    def __serve_build_asgi_app__(self):
        return create_api(self.core.service, self.settings, lifecycle=[self.core, self.mode])

    def reconfigure(self, user_config: dict) -> None:
        """Serve passes the Ingress `user_config`; keys it leaves out keep their settings values."""
        config = {**self.settings.batching.model_dump(), **(user_config or {})}
        self.core.dispatcher.configure(BatchConfig.model_validate(config))
