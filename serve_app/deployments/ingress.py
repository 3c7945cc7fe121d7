"""The ingress deployment: Serve glue around the job service and its FastAPI app.

It owns the `@serve.batch` queue. One batch is at the generator at a time; jobs that arrive
meanwhile (plus any within `batch_wait_timeout_s`, default 0) leave together as the next batch,
up to `max_batch_size`, split into groups of compatible shape. So an idle service adds no wait
and a busy one batches. Both values are live: edit `user_config` in serve.yaml and re-apply;
Serve calls `reconfigure` without restarting the replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from pydantic import BaseModel, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.api.app import create_api
from serve_app.api.schemas import VideoObject
from serve_app.backends.base import GenerationParams, ProgressEvent, ResultEvent
from serve_app.backends.status import GeneratorStatus
from serve_app.jobs.batching import WorkItem
from serve_app.jobs.service import JobService
from serve_app.jobs.store import JobStore
from serve_app.settings import Settings
from serve_app.storage import open_storage

logger = logging.getLogger("ray.serve")


def render_video(job) -> dict:
    """What webhooks carry: the same job object GET /v1/videos/{id} returns."""
    return VideoObject.from_record(job).model_dump(mode="json")


class BatchConfig(BaseModel):
    """The Ingress `user_config` in serve.yaml."""

    max_batch_size: int = Field(4, ge=1, le=64)
    batch_wait_timeout_s: float = Field(0.0, ge=0, le=10)


class ServeGeneratorClient:
    """The job service's view of the generator deployment."""

    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def stream(self, batch: list[GenerationParams]) -> AsyncIterator[ProgressEvent | ResultEvent]:
        async for event in self.handle.options(stream=True).generate.remote(batch):
            yield event

    async def status(self, timeout_s: float) -> GeneratorStatus:
        response = self.handle.status.remote()

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
    def __init__(self, generator: DeploymentHandle, settings: Settings):
        self.settings = settings
        storage = open_storage(settings.storage_url, settings.s3_endpoint_url, settings.s3_region,
                               settings.s3_timeout_s)
        self.service = JobService(settings, JobStore(storage, settings.storage_retry_s),
                                  ServeGeneratorClient(generator), render=render_video)
        self.service.generate = self._generate
        self.reconfigure(BatchConfig(max_batch_size=settings.max_batch_size,
                                     batch_wait_timeout_s=settings.batch_wait_timeout_s).model_dump())
        logger.info("ingress ready: storage %s", storage.url)

    def __serve_build_asgi_app__(self):
        return create_api(self.service, self.settings)

    def reconfigure(self, user_config: dict) -> None:
        config = BatchConfig.model_validate(user_config or {})
        self._generate.set_max_batch_size(config.max_batch_size)
        self._generate.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        self.batch_config = config

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.0)
    async def _generate(self, items: list[WorkItem]) -> list:
        return await self.service.run_batch(items)
