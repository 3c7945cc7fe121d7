"""torch.compile of the DiT's blocks, with the attention inside the compiled graph.

FastVideo wraps its attention layer's forward in `torch.compiler.disable`, so a compiled Wan block is two
graphs around an eager middle: the q/k/v concatenation, the rotary embedding (fp32 copies of q and k, one
kernel per op), the padding and the output transpose ran as about a dozen eager kernels per block, 90 times a
video. FastVideo's own regional compile lets the attention of the model it compiles be traced; this does the
same for our block compile, so the rotary embedding fuses with the q/k norms and torch's SDPA runs inside the
graph (the kernel order `choose_attention_kernel` set is read when the graph is traced). Within bf16 rounding
of the eager boundary (inductor fuses the fp32 steps); FASTVIDEO_DISABLE_ATTENTION_COMPILE=1 keeps the
boundary. Under sequence parallelism (2+ GPUs a replica) the Ulysses all-to-all goes into the graph too: torch's
all_to_all_single, which dynamo traces (FastVideo's fused NVLink all-to-all declines while compiling, by design,
so that regional compile stays one graph); over gloo processes one graph, no break, the eager output
(tests/fastvideo/test_dit_compile.py).
"""

from __future__ import annotations


def attention_in_graph_refusal() -> str | None:
    """Why the attention stays out of the compiled graph, or None when it goes in."""
    from fastvideo.attention.layer import _attention_compile_explicitly_disabled

    if _attention_compile_explicitly_disabled():
        return "FASTVIDEO_DISABLE_ATTENTION_COMPILE=1 keeps it eager"
    return None


def compile_blocks(transformer, mode: str | None = None, backend: str = "inductor") -> dict:
    """Compile each block (regional: one graph serves all 30), the attention inside where it may be."""
    from fastvideo.attention.layer import DistributedAttention
    from fastvideo.distributed.parallel_state import get_sp_world_size

    blocks = getattr(transformer, "blocks", None)
    if blocks is None:
        raise RuntimeError(f"{type(transformer).__name__} has no .blocks to compile")
    refusal, gpus = attention_in_graph_refusal(), get_sp_world_size()
    layers = [m for m in blocks.modules() if isinstance(m, DistributedAttention)]
    for layer in layers:
        layer._set_compile_forward_enabled(refusal is None)
    for block in blocks:
        block.compile(mode=mode, dynamic=False, backend=backend)
    inside = f"{len(layers)} layers in the graph" + (f", their all-to-all over {gpus} GPUs too" if gpus > 1 else "")
    return {"compiled_blocks": len(blocks), "compile_mode": mode or "default",
            "dit_attention_compiled": inside if refusal is None else f"no: {refusal}"}


def compile_transformer(wrapper, mode: str | None = None) -> dict:
    """Worker op: compile the pipeline's DiT blocks (see `compile_blocks`)."""
    return compile_blocks(wrapper.worker.pipeline.get_module("transformer"), mode)
