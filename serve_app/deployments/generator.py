"""The generator deployment: one replica per GPU, the model loaded once, batches run off the event loop.

The replica's constructor returns at once and the model loads in a thread: Serve routes to the replica
from its first second, so `/ready` answers "loading" at once instead of waiting 2 s on a replica that
does not exist yet, and requests accepted during the start wait here for the model.
Start-up: load, a tiny self-check run eagerly (compiling its throwaway shape would only cost time),
ready; then one video of each common shape so the first request does not pay torch.compile. A failed
load or self-check fails the health check, so Serve replaces the replica.
Model work runs in worker threads, so the replica keeps answering status calls while it denoises; an
asyncio lock keeps one batch on the device at a time. Progress and the result are streamed back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator

from ray import serve

from serve_app.backends import create_backend
from serve_app.contracts import GenerationParams, GeneratorEvent, GeneratorStatus, ProgressEvent, ResultEvent, \
    StartedEvent
from serve_app.settings import Settings

logger = logging.getLogger("ray.serve")

SELFCHECK = GenerationParams(prompt="self-check", width=64, height=64, num_frames=5, fps=8, num_inference_steps=1,
                             guidance_scale=1.0, seed=0)


@serve.deployment(max_ongoing_requests=16, health_check_period_s=10, health_check_timeout_s=30,
                  graceful_shutdown_timeout_s=60)
class Generator:
    def __init__(self, settings: Settings):
        logger.info("generator replica starting (pid %d)", os.getpid())
        self.settings = settings
        self.status_ = GeneratorStatus(state="loading", reason="loading the model")
        self._lock = asyncio.Lock()
        self._started = time.perf_counter()
        self._settled = threading.Event()  # set once ready or failed
        self.backend = create_backend(settings)
        self.replica_id = _replica_id()
        threading.Thread(target=self._start_up, name="start-up", daemon=True).start()

    def _start_up(self) -> None:
        """Load, self-check, ready; then the warm-up. Runs in its own thread."""
        try:
            self.backend.load()
            self.status_.load_sec = round(time.perf_counter() - self._started, 2)
            logger.info("generator loaded in %s s", self.status_.load_sec)
            self.status_.info = self.backend.info()
            if self.settings.selfcheck:
                self._self_check()
        except Exception as exc:  # noqa: BLE001 - reported by /ready, and the health check has Serve replace us
            logger.exception("the generator failed to start")
            self.status_.reason = f"the model failed to load or self-check: {exc}"
            self.status_.state = "failed"
            self._settled.set()
            return
        self.status_.state, self.status_.reason, self.status_.ready_at = "ready", None, round(time.time(), 3)
        self._settled.set()
        self._log_selfcheck()
        warmup = self.backend.warmup_params() if self.settings.warmup else []
        if warmup:  # requests that arrive meanwhile wait for the device, as they would for the compile itself
            self.status_.warmup = "running"
            self._warm_up(warmup)

    def _self_check(self) -> None:
        start = time.perf_counter()
        with self.backend.eager():
            video = self.backend.generate([SELFCHECK], lambda *_: None)[0]
        expected = (SELFCHECK.num_frames, SELFCHECK.height, SELFCHECK.width)
        if video.size != expected:
            raise RuntimeError(f"self-check produced a {video.size} video, expected {expected}")
        self.status_.selfcheck_sec = round(time.perf_counter() - start, 2)

    def _warm_up(self, batch: list[GenerationParams]) -> None:
        start = time.perf_counter()
        try:
            for params in batch:
                self.backend.generate([params], lambda *_: None)
            self.status_.warmup = "done"
        except Exception:  # noqa: BLE001 - a failed warm-up leaves a working, only slower, first request
            logger.exception("warm-up failed")
            self.status_.warmup = "failed"
        self.status_.warmup_sec = round(time.perf_counter() - start, 2)
        logger.info("warm-up %s in %s s (%d videos)", self.status_.warmup, self.status_.warmup_sec, len(batch))

    def _log_selfcheck(self) -> None:
        info, s = self.status_.info, self.status_
        lines = [
            "===== FastWan Serve generator self-check =====",
            f"PyTorch version: {info.torch_version}",
            f"CUDA available: {info.cuda_available}",
            f"Device: {info.device} ({info.device_name})",
            f"Backend: {info.backend}",
            f"Model: {info.model}",
            *(f"{k}: {v}" for k, v in info.details.items()),
            f"Loaded in {s.load_sec} s; self-check generation: "
            + (f"passed in {s.selfcheck_sec} s" if s.selfcheck_sec is not None else "skipped"),
            "==============================================",
        ]
        for line in lines:
            logger.info(line)

    async def generate(self, batch: list[GenerationParams]) -> AsyncIterator[GeneratorEvent]:
        """Stream StartedEvent when the device is ours, ProgressEvent per step, then one ResultEvent."""
        if not self._settled.is_set():
            await asyncio.to_thread(self._settled.wait)
        if self.status_.state == "failed":
            raise RuntimeError(f"the generator is not serving: {self.status_.reason}")
        async with self._lock:
            self.status_.busy = True
            try:
                yield StartedEvent(replica=self.replica_id, at=time.time())
                loop = asyncio.get_running_loop()
                events: asyncio.Queue[ProgressEvent] = asyncio.Queue()

                def on_progress(done: int, total: int) -> None:
                    loop.call_soon_threadsafe(events.put_nowait, ProgressEvent(step=done, total=total))

                work = asyncio.ensure_future(asyncio.to_thread(self.backend.generate, batch, on_progress))
                while not work.done():
                    waiter = asyncio.ensure_future(events.get())
                    await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    if waiter.done():
                        yield waiter.result()
                    else:
                        waiter.cancel()
                while not events.empty():
                    yield events.get_nowait()
                yield ResultEvent(videos=work.result())
            finally:
                self.status_.busy = False

    def status(self) -> GeneratorStatus:
        if self.status_.state == "loading":
            return self.status_.model_copy(update={
                "reason": f"loading the model ({time.perf_counter() - self._started:.0f} s so far)"})
        return self.status_

    def check_health(self) -> None:
        """Serve replaces a replica whose model failed to load or whose device stopped working."""
        if self.status_.state == "failed":
            raise RuntimeError(self.status_.reason)
        if self.status_.state == "ready":
            self.backend.check()

    def __del__(self):
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # noqa: BLE001 - outside a Serve replica (tests construct the class directly)
        return f"local-{os.getpid()}"
