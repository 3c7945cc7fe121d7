"""Decode and encode at once, in the GPU worker: the MP4 is written while the VAE decodes.

The Wan VAE decodes one latent frame (4 video frames) at a time anyway. This decoding stage hands
each chunk, converted to YUV 4:2:0 uint8 on the GPU and copied to pinned host memory, to an H.264
encoder thread; the encode then overlaps the decode instead of following it, and only the MP4 crosses
Ray, not the frames. The encoder's C code runs outside
Python's GIL on its own threads, so the decode loop keeps the GPU fed. Without a sink in
`batch.extra[VIDEO_SINK]` (or for a batch of several videos) the stock decode runs.
Imports fastvideo: import this module only where FastVideo is installed.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import torch
from fastvideo.pipelines.stages.decoding import DecodingStage

from serve_app.media.video import Mp4Writer
from serve_app.media.yuv import fit_video, rgb_to_i420

VIDEO_SINK = "serve_video_sink"  # batch.extra key: a StreamingEncoder, set inside the worker only
WARMUP_LATENT_FRAMES = "serve_warmup_latent_frames"  # batch.extra key: decode only this many latent frames


class StreamingEncoder:
    """Encodes YUV chunks on a CPU thread while the GPU makes the next ones (`delivery`: size, fps, quality)."""

    def __init__(self, path: Path, delivery):
        self.size = (delivery.width, delivery.height)
        self.writer = Mp4Writer(path, delivery.fps, delivery.crf, delivery.preset)
        self.chunks: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.decoded_at: float | None = None
        self.thread = threading.Thread(target=self._run, name="mp4-encoder", daemon=True)
        self.thread.start()

    def put(self, video: torch.Tensor) -> None:
        """(1, C, T, H, W) floats in [0, 1] on the GPU: fit, convert, start the copy to the host, queue it."""
        yuv = rgb_to_i420(fit_video(video.permute(0, 2, 1, 3, 4), *self.size))[0]
        host = torch.empty(yuv.shape, dtype=torch.uint8, pin_memory=yuv.is_cuda)
        host.copy_(yuv, non_blocking=True)
        done = torch.cuda.Event() if yuv.is_cuda else None
        if done is not None:
            done.record()
        self.chunks.put((host, done))

    def _run(self) -> None:
        while (item := self.chunks.get()) is not None:
            if self.error is not None:
                continue  # drain; the error is raised by finish()
            host, done = item
            try:
                if done is not None:
                    done.synchronize()
                self.writer.write(host.numpy())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller in finish()
                self.error = exc

    def finish(self) -> float:
        """Wait for the last chunk and close the file; returns the seconds spent waiting (the encode tail)."""
        start = time.perf_counter()
        self.chunks.put(None)
        self.thread.join()
        if self.error is not None:
            self.writer.abort()
            raise self.error
        self.writer.close()
        return time.perf_counter() - start

    def abort(self) -> None:
        self.chunks.put(None)
        self.thread.join()
        self.writer.abort()


class StreamingDecodingStage(DecodingStage):
    """FastVideo's decoding stage, one latent frame at a time into the batch's sink (if it has one).

    With a `light_decoder` (the fast profile, light_decoder.py) that decoder replaces the Wan VAE's."""

    light_decoder = None

    @torch.no_grad()
    def forward(self, batch, fastvideo_args):
        if self.light_decoder is not None:
            return self._light_decode(batch, fastvideo_args)
        if batch.extra.get(WARMUP_LATENT_FRAMES):
            return self._warm_up(batch, fastvideo_args, batch.extra[WARMUP_LATENT_FRAMES])
        sink = batch.extra.get(VIDEO_SINK)
        if sink is None or batch.latents.shape[0] != 1:
            return super().forward(batch, fastvideo_args)
        start = time.perf_counter()
        cache = None
        for i in range(batch.latents.shape[2]):
            chunk, cache = self.streaming_decode(batch.latents[:, :, i:i + 1], fastvideo_args, cache,
                                                 is_first_chunk=i == 0)
            sink.put(chunk)
        del cache
        if fastvideo_args.vae_cpu_offload:
            self.vae.to("cpu")
        return self._streamed(batch, sink, start)

    @staticmethod
    def _streamed(batch, sink, start: float):
        """The decode went into the sink: note when it ended; the batch's output is an empty 5-d video."""
        sink.decoded_at = time.perf_counter()
        batch.extra["serve_decode_s"] = sink.decoded_at - start
        batch.output = torch.empty((1, 3, 0, 1, 1))  # the frames are in the sink (5-d: FastVideo checks)
        return batch

    def _light_decode(self, batch, fastvideo_args):
        """The light decoder, a few latent frames at a time, into the sink (one video) or batch.output. A warm-up
        decodes every chunk too (each chunk shape tunes its own convs; the whole decode is cheap) and keeps one."""
        start, sink, warm_up = time.perf_counter(), batch.extra.get(VIDEO_SINK), batch.extra.get(WARMUP_LATENT_FRAMES)
        latents = self._denormalize_latents(batch.latents, fastvideo_args)
        streamed = sink is not None and latents.shape[0] == 1 and not warm_up
        chunks = []
        for chunk in self.light_decoder.stream(latents):
            if streamed:
                sink.put(chunk)
            elif not (warm_up and chunks):
                chunks.append(chunk)
        if streamed:
            return self._streamed(batch, sink, start)
        batch.output = torch.cat(chunks, dim=2).float()
        return batch

    def _warm_up(self, batch, fastvideo_args, latent_frames: int):
        """The first `latent_frames` chunks only: every conv shape of the decode, at a fraction of its cost."""
        cache, chunks = None, []
        for i in range(min(latent_frames, batch.latents.shape[2])):
            chunk, cache = self.streaming_decode(batch.latents[:, :, i:i + 1], fastvideo_args, cache,
                                                 is_first_chunk=i == 0)
            chunks.append(chunk)
        del cache
        batch.output = torch.cat(chunks, dim=2)
        return batch

