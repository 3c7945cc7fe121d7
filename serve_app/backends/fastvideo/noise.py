"""The initial noise, drawn while the text encoder runs: the same draw, from the same seed, started earlier.

FastVideo's latent stage draws a video's starting noise on the CPU from the seed's CPU generator (so a seed
gives the same video on every card), after the text encoder and before the denoise: a serial draw of 5.2
million numbers in which the GPU idles. Here the same stage code draws it on a thread as soon as the worker
has the request, from a generator seeded as FastVideo's input stage seeds it, and the stage takes that
draw only if it provably equals its own: the generator it would draw from is in the state the thread's
started from, and the args, shape inputs and dtype are the same. Then the real generator is moved to where
the thread's ended, so the denoise's later draws continue the same stream. Anything else (an unknown dtype
on the first request, a caller's own latents or generators): the thread's draw is dropped and the stock
stage draws, as before. Either way the draw itself runs in several threads (chunked_randn.py: the same
numbers). Imports fastvideo lazily: it runs in the GPU worker.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

PREFETCHED_NOISE = "serve_prefetched_noise"  # batch.extra key: a Future[Draw]
DISABLE_ENV = "FASTWAN_NOISE_PREFETCH"  # "0": FastVideo's own draw, in the stage (the bench's baseline)
log = logging.getLogger(__name__)
_DRAWER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="noise-prefetch")


@dataclass
class Draw:
    """What the thread drew, and from what: enough to prove the stage would draw exactly this."""

    key: tuple
    fastvideo_args: object  # the very args the pipeline runs with (the worker's own, not the caller's copy)
    start_states: list[torch.Tensor]
    end_states: list[torch.Tensor]
    latents: torch.Tensor
    raw_latent_shape: tuple


def seeded_generators(batch) -> list[torch.Generator]:
    """CPU generators seeded as FastVideo's input stage seeds them (seed + i for each video of the prompt)."""
    return [torch.Generator("cpu").manual_seed(batch.seed + i) for i in range(batch.num_videos_per_prompt)]


def draw_key(batch, dtype: torch.dtype) -> tuple:
    """Everything besides the generator that the stock latent stage's draw depends on (one prompt string)."""
    return (batch.height, batch.width, batch.num_frames, batch.num_videos_per_prompt, type(batch.prompt), dtype)


def start_prefetch(stage, batch, fastvideo_args) -> bool:
    """Start drawing the request's noise on the thread for the latent `stage`; False when it could not take it.
    `fastvideo_args`: the ones the pipeline will run with (in FastVideo's worker, the worker's own: the copy a
    caller sends lacks what the model's files set, such as the VAE's compression)."""
    dtype = getattr(stage, "noise_dtype", None)
    if (os.environ.get(DISABLE_ENV) == "0" or dtype is None or batch.latents is not None
            or batch.generator is not None or batch.seed is None or not isinstance(batch.prompt, str)):
        return False
    trial = copy.copy(batch)  # shallow, taken now: the fields the stage sets are set on the copy
    trial.extra = {}
    trial.generator = seeded_generators(batch)
    trial.prompt_embeds = [torch.empty(0, dtype=dtype)]  # the stage reads only its dtype (one prompt string)
    batch.extra[PREFETCHED_NOISE] = _DRAWER.submit(draw_ahead, stage.draw_stock, trial, fastvideo_args,
                                                   draw_key(batch, dtype))
    return True


def draw_ahead(draw, trial, fastvideo_args, key: tuple) -> Draw:
    """`draw` (the stock stage's forward) on the request's copy, which has its own seeded generators."""
    start = [g.get_state() for g in trial.generator]
    trial = draw(trial, fastvideo_args)
    return Draw(key=key, fastvideo_args=fastvideo_args, start_states=start,
                end_states=[g.get_state() for g in trial.generator], latents=trial.latents,
                raw_latent_shape=trial.raw_latent_shape)


def take_prefetched(batch, fastvideo_args) -> bool:
    """In the stage: use the thread's draw if it is the one the stage would make; move the generators on."""
    pending: Future | None = batch.extra.pop(PREFETCHED_NOISE, None)
    if pending is None:
        return False
    try:
        drawn = pending.result()
    except Exception as exc:  # noqa: BLE001 - the stage draws for itself, as it would have anyway
        log.warning("the noise drawn ahead failed (%s): the latent stage draws it", exc)
        return False
    generators = batch.generator if isinstance(batch.generator, list) else [batch.generator]
    if not is_the_stages_own(drawn, batch, fastvideo_args, generators):
        log.warning("the noise drawn ahead is not what the latent stage would draw: it draws it again")
        return False
    for generator, state in zip(generators, drawn.end_states):
        generator.set_state(state)
    batch.latents, batch.raw_latent_shape = drawn.latents, drawn.raw_latent_shape
    return True


def is_the_stages_own(drawn: Draw, batch, fastvideo_args, generators: list) -> bool:
    """The stage would draw the same: no latents given, the same args, inputs and dtype, and each generator
    in the state the thread's started from."""
    if batch.latents is not None or drawn.fastvideo_args is not fastvideo_args or not batch.prompt_embeds:
        return False
    if drawn.key != draw_key(batch, batch.prompt_embeds[0].dtype) or len(generators) != len(drawn.start_states):
        return False
    return all(isinstance(g, torch.Generator) and g.device.type == "cpu" and torch.equal(g.get_state(), state)
               for g, state in zip(generators, drawn.start_states))


def prefetching_latent_stage(stock):
    """FastVideo's latent stage `stock` (its state kept), taking the thread's draw when it is provably its own."""
    new = _prefetching_stage_class().__new__(_prefetching_stage_class())
    new.__dict__.update(stock.__dict__)
    return new


def install_noise_draw() -> str:
    """FastVideo's latent stage draws through chunked_randn (the same numbers, in threads); says how it draws."""
    import fastvideo.pipelines.stages.latent_preparation as latent_module

    from serve_app.backends.fastvideo.chunked_randn import PARTS, parallel_randn_tensor

    if os.environ.get(DISABLE_ENV) == "0":
        return f"FastVideo's own draw, in the stage ({DISABLE_ENV}=0)"
    latent_module.randn_tensor = parallel_randn_tensor(latent_module.randn_tensor)
    return f"drawn ahead, in {PARTS} threads" if PARTS > 1 else "drawn ahead, in one thread (one CPU)"


@functools.cache
def _prefetching_stage_class():
    from fastvideo.pipelines.stages.latent_preparation import LatentPreparationStage

    class PrefetchingLatentPreparationStage(LatentPreparationStage):
        noise_dtype: torch.dtype | None = None  # learned from the first request (the warm-up)
        prefetched_draws = 0  # requests whose noise was drawn ahead (tests, logs)

        def draw_stock(self, batch, fastvideo_args):
            return LatentPreparationStage.forward(self, batch, fastvideo_args)

        def forward(self, batch, fastvideo_args):
            if batch.prompt_embeds:
                self.noise_dtype = batch.prompt_embeds[0].dtype
            if take_prefetched(batch, fastvideo_args):
                self.prefetched_draws += 1
                return batch
            return super().forward(batch, fastvideo_args)

    return PrefetchingLatentPreparationStage
