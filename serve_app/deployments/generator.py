"""The generator deployment: one replica per GPU, the model loaded once, batches run off the event loop.

The replica's constructor returns at once and the model loads in a thread: Serve routes to the replica
from its first second, so `/ready` answers "loading" at once instead of waiting 2 s on a replica that
does not exist yet, and requests accepted during the start wait here for the model.
Start-up: load, a tiny self-check run eagerly (compiling its throwaway shape would only cost time),
ready; then one video of each common shape so the first request does not pay torch.compile. When /ready
waits for that warm-up anyway (`ready_after_warmup`), the warm-up is the self-check: it runs the same path
at the size requests use, and a second, smaller generation would only delay the first video. A failed
load, self-check or such warm-up fails the health check, so Serve replaces the replica.
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
from ray.serve.config import RequestRouterConfig
from ray.serve.handle import DeploymentHandle

from serve_app.backends import create_backend
from serve_app.contracts import (
    GenerationParams,
    GeneratorEvent,
    GeneratorStatus,
    JobTimedOut,
    OutOfMemory,
    ProgressEvent,
    ResultEvent,
    StartedEvent,
)
from serve_app.settings import Settings

logger = logging.getLogger("ray.serve")

STOP_GRACE_S = 120.0  # how long a stopped job may take to reach its next step
SELFCHECK = GenerationParams(prompt="self-check", width=64, height=64, num_frames=5, fps=8, num_inference_steps=1,
                             guidance_scale=1.0, seed=0)


@serve.deployment(max_ongoing_requests=1, health_check_period_s=10, health_check_timeout_s=30,
                  graceful_shutdown_timeout_s=60,
                  request_router_config=RequestRouterConfig(initial_backoff_s=0.01, max_backoff_s=0.05))
class Generator:
    """One job at a time (Serve's router holds the others until a replica is free); status goes to the board."""

    def __init__(self, settings: Settings, board: DeploymentHandle | None = None):
        logger.info("generator replica starting (pid %d)", os.getpid())
        self.settings = settings
        self.status_ = GeneratorStatus(state="loading", reason="loading the model")
        self._lock = asyncio.Lock()
        self._warmed = threading.Event()  # set once no warm-up is running: until then jobs wait for the device
        self._started = time.perf_counter()
        self._settled = threading.Event()  # set once ready or failed
        self.backend = create_backend(settings)
        self.replica_id, self.node_id = _replica_id(), _node_id()
        self.poster = StatusPoster(board, self.replica_id, self.status) if board is not None else None
        threading.Thread(target=self._start_up, name="start-up", daemon=True).start()

    def _start_up(self) -> None:
        """Load, self-check, ready; then the warm-up. Runs in its own thread."""
        try:
            self.backend.load()
            self.status_.load_sec = round(time.perf_counter() - self._started, 2)
            logger.info("generator loaded in %s s", self.status_.load_sec)
            self.status_.info = self.backend.info()
            warm_up = bool(self.settings.warmup and self.backend.warmup_params())
            checked_by_warm_up = warm_up and self.settings.ready_after_warmup and self.settings.selfcheck
            if self.settings.selfcheck and not checked_by_warm_up:
                self._self_check()
        except Exception as exc:  # noqa: BLE001 - reported by /ready, and the health check has Serve replace us
            logger.exception("the generator failed to start")
            self._fail(f"the model failed to load or self-check: {exc}")
            self._settled.set()
            return
        # One post says both "ready" and "warming up": a prober never sees a ready replica whose warm-up has not
        # begun, which it would take for one at full speed.
        self.status_.warmup = "running" if warm_up else "off"
        self.status_.state, self.status_.reason, self.status_.ready_at = "ready", None, round(time.time(), 3)
        if not warm_up:
            self._warmed.set()
        self._settled.set()
        self._changed()
        self._log_selfcheck()
        if warm_up:
            try:  # jobs that arrive meanwhile wait for the device (generate), as for a compile
                self._warm_up(checked_by_warm_up)
            finally:
                self._warmed.set()
                self._changed()

    def _self_check(self) -> None:
        start = time.perf_counter()
        with self.backend.eager():
            video = self.backend.generate([SELFCHECK], lambda *_: None)[0]
        expected = (SELFCHECK.num_frames, SELFCHECK.height, SELFCHECK.width)
        if video.size != expected:
            raise RuntimeError(f"self-check produced a {video.size} video, expected {expected}")
        self.status_.selfcheck_sec = round(time.perf_counter() - start, 2)

    def _warm_up(self, is_the_check: bool) -> None:
        """A failed warm-up leaves a working, only slower, first request, unless it stood in for the self-check."""
        start = time.perf_counter()
        try:
            self.status_.warmup_parts = self.backend.warm_up()
            self.status_.warmup = "done"
        except Exception as exc:  # noqa: BLE001 - reported by /ready and the health check
            logger.exception("warm-up failed")
            self.status_.warmup = "failed"
            if is_the_check:
                self._fail(f"the model failed its warm-up (which is its self-check): {exc}")
        self.status_.warmup_sec = round(time.perf_counter() - start, 2)
        logger.info("warm-up %s in %s s (%s)", self.status_.warmup, self.status_.warmup_sec, self.status_.warmup_parts)

    def _fail(self, reason: str) -> None:
        self.status_.reason, self.status_.state = reason, "failed"
        self._changed()

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
            + (f"passed in {s.selfcheck_sec} s" if s.selfcheck_sec is not None else
               "the warm-up's (next)" if s.warmup == "running" and self.settings.selfcheck else "skipped"),
            "==============================================",
        ]
        for line in lines:
            logger.info(line)

    async def generate(self, batch: list[GenerationParams]) -> AsyncIterator[GeneratorEvent]:
        """Stream StartedEvent when the device is ours, ProgressEvent per step, then one ResultEvent.

        If the caller gives up (the job's time limit), the backend is told to stop at its next step, and the
        device stays locked until it has: a stopped job never overlaps the next one.
        """
        if not self._settled.is_set():
            await asyncio.to_thread(self._settled.wait)
        if self.status_.state == "failed":
            raise RuntimeError(f"the generator is not serving: {self.status_.reason}")
        async with self._lock:
            while not self._warmed.is_set():  # the warm-up has the device (and may run a shortened schedule)
                await asyncio.sleep(0.05)
            if self.status_.state == "failed":  # the warm-up that stood in for the self-check failed
                raise RuntimeError(f"the generator is not serving: {self.status_.reason}")
            self.status_.busy = True
            self._changed()
            abort = threading.Event()
            loop = asyncio.get_running_loop()
            events: asyncio.Queue[ProgressEvent] = asyncio.Queue()

            def on_progress(done: int, total: int) -> None:
                if abort.is_set():
                    raise JobTimedOut("stopped by its caller")
                loop.call_soon_threadsafe(events.put_nowait, ProgressEvent(step=done, total=total))

            work = asyncio.ensure_future(asyncio.to_thread(self._run, batch, on_progress))
            try:
                yield StartedEvent(replica=self.replica_id, node=self.node_id, at=time.time())
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
            except (asyncio.CancelledError, GeneratorExit):
                abort.set()
                await self._outlast(work)
                raise
            finally:
                self.status_.busy = False
                self._changed()

    def _run(self, batch: list[GenerationParams], on_progress) -> list:
        """The backend call (in a worker thread); running out of memory is the job's failure, not the replica's."""
        try:
            return self.backend.generate(batch, on_progress)
        except Exception as exc:
            if not out_of_memory(exc):
                raise
            free_memory()
            first = batch[0]
            raise OutOfMemory(
                f"out of memory generating {first.width}x{first.height}x{first.num_frames} "
                f"({type(exc).__name__}: {str(exc)[:160]}); ask for a smaller size or fewer frames, or lower "
                "max_pixel_frames so that such requests are refused up front") from None

    async def _outlast(self, work: asyncio.Future) -> None:
        """Hold the device until an aborted call has stopped; a call that never stops makes the replica unhealthy."""
        done, _ = await asyncio.wait({work}, timeout=STOP_GRACE_S)
        if not done:
            self.status_.state = "failed"
            self.status_.reason = f"a stopped job was still running {STOP_GRACE_S:g} s later; replacing the replica"
            self._changed()
            await asyncio.shield(work)

    def _changed(self) -> None:
        if self.poster is not None:
            self.poster.changed()

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
        poster = getattr(self, "poster", None)
        if poster is not None:
            poster.leave()
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # noqa: BLE001 - outside a Serve replica (tests construct the class directly)
        return f"local-{os.getpid()}"


def out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, MemoryError) or any(
        words in text for words in ("outofmemoryerror", "out of memory", "can't allocate memory", "cannot allocate"))


def free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


class StatusPoster:
    """Posts the replica's status to the board every `PERIOD_S` and at once when it changes (`changed()`)."""

    PERIOD_S = 5.0

    def __init__(self, board: DeploymentHandle, replica_id: str, read):
        self.board, self.replica_id, self.read = board, replica_id, read
        self.wake = threading.Event()
        threading.Thread(target=self._loop, name="status-poster", daemon=True).start()

    def changed(self) -> None:
        self.wake.set()

    def leave(self) -> None:
        try:
            self.board.leave.remote(self.replica_id)
        except Exception:  # noqa: BLE001 - on the way down
            pass

    def _loop(self) -> None:
        while True:
            try:
                self.board.post.remote(self.replica_id, self.read()).result(timeout_s=10)
            except Exception:  # noqa: BLE001 - the board restarts with the app; keep posting
                logger.warning("could not post the generator status to the board", exc_info=True)
            self.wake.wait(self.PERIOD_S)
            self.wake.clear()
