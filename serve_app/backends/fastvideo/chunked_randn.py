"""torch.randn from a CPU generator, drawn by several threads: the same numbers in a fraction of the time.

torch draws normal numbers on the CPU in two passes: the generator's uniform numbers in order (necessarily
serial, about 5 ns a number), then a Box-Muller transform of each block of 16 (in bf16 scalar code, about
20 ns a number: 0.12-0.2 s for a 1280x704x121 video's 5.2 million, in which the GPU waits). Cut at multiples
of 16, each piece drawn by its own thread from a generator moved ahead to where the piece starts (moving
ahead is the first pass alone), the pieces are the same numbers, and the last piece's generator ends where
torch's would. `same_as_torch` checks exactly that on this machine's torch, once per dtype; where it does
not hold, torch draws as before.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import torch

PARTS = max(1, min(8, os.cpu_count() or 1))
MIN_NUMEL = 1 << 20  # below this one thread is as fast
_POOL = ThreadPoolExecutor(max_workers=PARTS, thread_name_prefix="randn")


def copy_of(generator: torch.Generator) -> torch.Generator:
    twin = torch.Generator("cpu")
    twin.set_state(generator.get_state())
    return twin


def randn(shape, generator: torch.Generator, dtype: torch.dtype, parts: int = PARTS) -> torch.Tensor:
    """torch.randn(shape, generator=generator, dtype=dtype) on the CPU, in `parts` threads; moves `generator`
    on as torch.randn would."""
    n = math.prod(shape)
    out = torch.empty(n, dtype=dtype)
    step = -(-n // parts)
    step += -step % 16  # torch transforms blocks of 16 from the tensor's start: cut only between them
    ahead, scratch = copy_of(generator), torch.empty(step, dtype=torch.uint8)
    pieces, start, last = [], 0, generator
    while start < n:
        end = n if n - (start + step) < 16 else start + step  # torch redraws a tail under 16 from the end
        last = copy_of(ahead)
        pieces.append(_POOL.submit(out[start:end].normal_, generator=last))
        if end < n:
            scratch[:end - start].random_(0, 2, generator=ahead)  # one 32-bit draw a number, as normal_'s first pass
        start = end
    for piece in pieces:
        piece.result()
    generator.set_state(last.get_state())
    return out.view(shape)


@functools.cache
def same_as_torch(dtype: torch.dtype) -> bool:
    """The pieces give torch's numbers and leave the generator where torch leaves it, on this torch (sizes
    with and without a tail of under 16)."""
    for n in (16 * 4099, 16 * 4099 + 7):
        ours, theirs = torch.Generator().manual_seed(n), torch.Generator().manual_seed(n)
        got = randn((n,), ours, dtype, parts=4)
        want = torch.randn((n,), generator=theirs, dtype=dtype)
        if not (torch.equal(got.view(torch.uint8), want.view(torch.uint8))
                and torch.equal(ours.get_state(), theirs.get_state())):
            return False
    return True


def parallel_randn_tensor(original):
    """diffusers' `randn_tensor` (what FastVideo's latent stage calls), drawing large tensors from one CPU
    generator in threads; anything else goes to `original`."""
    if getattr(original, "serve_parallel", False):
        return original

    @functools.wraps(original)
    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        one = generator[0] if isinstance(generator, list) and len(generator) == 1 else generator
        if (isinstance(one, torch.Generator) and one.device.type == "cpu" and layout in (None, torch.strided)
                and dtype is not None and math.prod(shape) >= MIN_NUMEL and PARTS > 1 and same_as_torch(dtype)):
            out = randn(tuple(shape), one, dtype)
            return out.to(device) if device is not None else out
        return original(shape, generator=generator, device=device, dtype=dtype, layout=layout)

    randn_tensor.serve_parallel = True
    return randn_tensor
