"""The DiT's blocks compiled with the attention inside the graph (dit_compile.py).

Needs FastVideo, not a GPU: the tiny Wan DiT on the CPU (gloo), each configuration in processes of its own.
Traced by dynamo and run by inductor (its CPU code needs a C++ compiler) and by `aot_eager` (the same graph,
run by ATen: the same numbers as eager).
"""

import functools
import shutil

import pytest
import torch

from tests.fastvideo.gloo import over_processes, tiny_dit


def compiled_dit_rank(rank: int, world: int, port: int, out: str, backend: str = "inductor") -> None:
    """One rank: the tiny DiT eager, then with its blocks compiled as the service compiles them."""
    from fastvideo.forward_context import set_forward_context
    from torch._dynamo.utils import counters

    from serve_app.backends.fastvideo.dit_compile import compile_blocks

    model, inputs = tiny_dit(rank, world, port)
    with torch.no_grad(), set_forward_context(current_timestep=0, attn_metadata=None):
        eager = model(*inputs)
        report = compile_blocks(model, backend=backend)
        compiled = model(*inputs)
    if rank == 0:
        torch.save({"eager": eager, "compiled": compiled, "report": report,
                    "graphs": int(counters["stats"]["unique_graphs"]),
                    "graph_breaks": dict(counters["graph_break"])}, out)


# inductor's CPU code takes about two minutes to compile on CI's two cores: `make soak` runs it
@pytest.mark.parametrize("backend", [pytest.param("inductor", marks=pytest.mark.soak), "aot_eager"])
def test_the_attention_is_compiled_with_its_block_and_gives_the_eager_output(tmp_path, backend):
    """One process: one graph for both blocks, no break, the eager numbers (fp32, within fusion rounding).
    Two processes (sequence parallelism): the same, the Ulysses all-to-all inside the graph too."""
    if backend == "inductor" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("inductor's CPU code needs a C++ compiler; none here")
    rank_fn = functools.partial(compiled_dit_rank, backend=backend)
    rank_fn.__name__ = f"compiled_dit_{backend}"
    one, two = over_processes(rank_fn, tmp_path)
    assert one["report"]["dit_attention_compiled"] == "2 layers in the graph", one["report"]
    assert one["graph_breaks"] == {} and one["graphs"] == 1, (one["graphs"], one["graph_breaks"])
    assert torch.allclose(one["compiled"], one["eager"], atol=1e-4), (one["compiled"] - one["eager"]).abs().max()
    assert two["report"]["dit_attention_compiled"] == "2 layers in the graph, their all-to-all over 2 GPUs too"
    assert two["graph_breaks"] == {} and two["graphs"] == 1, (two["graphs"], two["graph_breaks"])
    assert torch.allclose(two["compiled"], one["eager"], atol=1e-4), (two["compiled"] - one["eager"]).abs().max()
