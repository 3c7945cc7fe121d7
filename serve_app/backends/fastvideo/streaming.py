"""Decode and encode at once, in the GPU worker: the MP4 is written while the VAE decodes.

The Wan VAE decodes one latent frame (4 video frames) at a time anyway. This decoding stage hands
each chunk, converted to YUV 4:2:0 uint8 on the GPU and copied to pinned host memory, to an H.264
encoder thread; the encode then overlaps the decode instead of following it, and only the MP4 crosses
Ray, not the frames. The encoder's C code runs outside
Python's GIL on its own threads, so the decode loop keeps the GPU fed. Without a sink in
`batch.extra[VIDEO_SINK]` the same chunks go to `batch.output`; a batch of several videos takes the stock decode.
Imports fastvideo: import this module only where FastVideo is installed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from pathlib import Path

import torch
from fastvideo.pipelines.stages.decoding import DecodingStage

from serve_app.media.video import Mp4Writer
from serve_app.media.yuv import fit_video, rgb_to_i420

VIDEO_SINK = "serve_video_sink"  # batch.extra key: a StreamingEncoder, set inside the worker only
WARMUP_LATENT_FRAMES = "serve_warmup_latent_frames"  # batch.extra key: decode only this many latent frames (>= 1)
SPLIT_DECODE = "serve_split_decode"  # batch.extra key: (rank, GPUs) of a replica of several; the first delivers


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
    """FastVideo's decoding stage, one latent frame at a time into the batch's sink (or into batch.output).

    With a `light_decoder` (the fast profile, light_decoder.py) that decoder replaces the Wan VAE's. On a replica of
    several GPUs (`SPLIT_DECODE`) each decodes a band of columns of one video (split_decode.py); anything else
    there is decoded by the first GPU alone."""

    light_decoder = None

    @torch.no_grad()
    def forward(self, batch, fastvideo_args):
        start, warm_up = time.perf_counter(), batch.extra.get(WARMUP_LATENT_FRAMES)
        one_wan_video = self.light_decoder is None and batch.latents.shape[0] == 1 and not getattr(
            batch, "return_trajectory_decoded", False) and getattr(fastvideo_args, "output_type", None) != "latent"
        rank, world = batch.extra.get(SPLIT_DECODE, (0, 1))
        if rank != 0 and not one_wan_video:  # the first GPU decodes alone: here the GPU and the CPU stay free
            batch.output = torch.empty((1, 3, 0, 1, 1))
            return batch
        if self.light_decoder is not None:  # a warm-up decodes every chunk (each chunk shape tunes its own convs;
            latents = self._denormalize_latents(batch.latents, fastvideo_args)  # the whole decode is cheap)
            return self._deliver(batch, self.light_decoder.stream(latents), start, keep=1 if warm_up else None)
        if not one_wan_video:
            return super().forward(batch, fastvideo_args)  # several videos, or what only FastVideo's stage does
        latents = batch.latents if warm_up is None else batch.latents[:, :, :max(1, warm_up)]
        chunks = self.decode_chunks(latents, fastvideo_args) if world == 1 else \
            self.split_chunks(latents, fastvideo_args, rank, world)
        if rank != 0:  # its bands went to the first GPU
            for _ in chunks:
                pass
            batch.output = torch.empty((1, 3, 0, 1, 1))
            return batch
        batch = self._deliver(batch, chunks, start)
        if fastvideo_args.vae_cpu_offload:
            self.vae.to("cpu")
        return batch

    def decode_chunks(self, latents, fastvideo_args):
        """One latent frame a call, FastVideo's causal cache carried from call to call; yields frames in [0, 1].

        From the second chunk on the compiled decoder blocks see the same shapes, so each traces one graph, not
        three: the first chunk's one-frame causal caches get the zero frame in front that each causal conv would
        pad anyway (vae.pad_causal_caches: same numbers), and the first chunk itself (one video frame) runs as
        `_first_chunk` says. The third chunk is the first whose upsampling convs read a cache of their own."""
        from serve_app.backends.fastvideo.vae import pad_causal_caches

        cache = None
        for i in range(latents.shape[2]):
            with _first_chunk() if i == 0 else contextlib.nullcontext():
                chunk, cache = self.streaming_decode(latents[:, :, i:i + 1], fastvideo_args, cache,
                                                     is_first_chunk=i == 0)
            if i == 0:
                pad_causal_caches(cache)
            yield chunk

    def split_chunks(self, latents, fastvideo_args, rank: int, world: int):
        """This GPU's band of each chunk (split_decode.py), all-gathered: whole chunks, the same on every GPU.
        Narrow halos exchanged at each resolution where the bands are wide enough, else one wide halo."""
        from serve_app.backends.fastvideo import split_decode

        decoder, width = self.vae.decoder, latents.shape[-1]
        every = split_decode.bands(width, world, 0)
        if split_decode.exchange_fits(decoder, every):
            decoding = split_decode.exchanging_halos(decoder, every[rank], rank, world)
        else:
            every = split_decode.bands(width, world, split_decode.decoder_halo(decoder))
            decoding = split_decode.decoding_band(decoder, every[rank])
        with decoding:
            for kept in split_decode.band_chunks(self.decode_chunks(latents, fastvideo_args), every[rank]):
                yield split_decode.gather_bands(kept, every, rank)

    @staticmethod
    def _deliver(batch, chunks, start: float, keep: int | None = None):
        """The chunks into the batch's sink (one video, not a warm-up), noting when the decode ended, with an empty
        5-d video as batch.output (FastVideo checks); else the first `keep` chunks (all: None) as batch.output."""
        sink = batch.extra.get(VIDEO_SINK)
        streamed = sink is not None and batch.latents.shape[0] == 1 and WARMUP_LATENT_FRAMES not in batch.extra
        kept = []
        for chunk in chunks:
            if streamed:
                sink.put(chunk)
            elif keep is None or len(kept) < keep:
                kept.append(chunk)
        if not streamed:
            batch.output = torch.cat(kept, dim=2).float()
            return batch
        sink.decoded_at = time.perf_counter()
        batch.extra["serve_decode_s"] = sink.decoded_at - start
        batch.output = torch.empty((1, 3, 0, 1, 1))
        return batch


@contextlib.contextmanager
def _first_chunk():
    """The first chunk of a decode: eager (graphs for its shapes would be traced at every start for one video
    frame) and with cuDNN's default conv algorithms (searching them for its shapes costs seconds at every start)."""
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        with torch.compiler.set_stance("force_eager"):
            yield
    finally:
        torch.backends.cudnn.benchmark = benchmark
