"""One DiT forward (one denoising step) of the full-size FastWan2.2-TI2V-5B, alone: where its time goes.

The denoise is 3 of these at 1280x704x121 (27,280 tokens). The model is FastVideo's own Wan DiT with the
TI2V-5B shapes and random bf16 weights drawn on the GPU (no files), called as the service's TI2V stage
calls it (per-token timesteps, the first latent frame at 0), with torch's SDPA kernels in the order the
service chooses on the card (cuDNN first on an H200). Variants, each compiled block by block as the
service compiles them (`serve_app/backends/fastvideo/dit_compile.py`):

- `eager-attention`: FastVideo's boundary (its attention forward under `torch.compiler.disable`), as
  before run 36;
- `attention-in-graph`: the attention traced into each block's graph (the service's default now).

For each: milliseconds a forward (median of --n, wall clock between CUDA synchronizations), graphs and graph breaks, and one forward
profiled kernel by kernel, summed by kind (GEMM, attention, Triton-fused, other); the largest output
difference against the first variant. Writes OUT/dit_step.{json,md}.

    python bench/dit_step.py --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = (("attention", r"fmha|flash|attention|cudnn|sdpa"), ("GEMM", r"gemm|nvjet|xmma|cutlass|sm90_|s16816"),
         ("Triton-fused", r"^triton_"))


def build_dit(frames: int, height: int, width: int, device: str = "cuda", tiny: bool = False):
    """FastVideo's Wan DiT with the TI2V-5B shapes (or tiny ones, to try the bench on a CPU), random bf16
    weights drawn on the device, and a step's inputs."""
    import torch
    from fastvideo.configs.models.dits import WanVideoConfig
    from fastvideo.models.dits.wanvideo import WanTransformer3DModel

    from serve_app.models.full import TRANSFORMER

    config = WanVideoConfig()
    shapes = dict(TRANSFORMER, **(dict(num_attention_heads=2, attention_head_dim=32, text_dim=32, ffn_dim=64,
                                        num_layers=2) if tiny else {}))
    for key, value in shapes.items():
        setattr(config.arch_config, key, value)
    config.arch_config.text_len = 16 if tiny else 512
    config.arch_config.__post_init__()
    with torch.device(device):
        model = WanTransformer3DModel(config=config, hf_config={}).to(torch.bfloat16).eval()
        for param in model.parameters():
            torch.nn.init.normal_(param, std=0.02)
        latents = torch.randn(1, 48, frames, height // 16, width // 16, dtype=torch.bfloat16)
        text = torch.randn(1, config.arch_config.text_len, shapes["text_dim"], dtype=torch.bfloat16)
        per_frame = (height // 32) * (width // 32)
        timesteps = torch.full((1, frames * per_frame), 757, dtype=torch.long)
        timesteps[:, :per_frame] = 0  # image-to-video's first frame; text-to-video runs the same graphs
    return model, (latents, text, timesteps)


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def kind_of(name: str) -> str:
    return next((kind for kind, pattern in KINDS if re.search(pattern, name, re.IGNORECASE)), "other")


def profile(call) -> dict:
    """One call profiled: CUDA milliseconds by kernel kind, and the 12 largest kernels."""
    import torch
    from torch.profiler import ProfilerActivity

    device = ProfilerActivity.CUDA if torch.cuda.is_available() else ProfilerActivity.CPU  # CPU: --tiny
    with torch.profiler.profile(activities=[device]) as prof:
        call()
        sync()
    kernels: dict[str, list[float]] = {}
    for event in prof.events():
        if device == ProfilerActivity.CPU or event.device_type == torch.autograd.DeviceType.CUDA:
            kernels.setdefault(event.name, []).append(event.device_time / 1000)
    by_kind: dict[str, float] = {}
    for name, times in kernels.items():
        kind = kind_of(name)
        by_kind[kind] = by_kind.get(kind, 0.0) + sum(times)
    top = sorted(kernels.items(), key=lambda kv: -sum(kv[1]))[:12]
    return {"ms_by_kind": {k: round(v, 2) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "kernel_launches": sum(len(t) for t in kernels.values()),
            "top": [{"kernel": name[:90], "calls": len(t), "ms": round(sum(t), 2), "kind": kind_of(name)}
                    for name, t in top]}


def run_variant(name: str, model, inputs, n: int) -> tuple[dict, object]:
    import torch
    from fastvideo.forward_context import set_forward_context
    from torch._dynamo.utils import counters

    from serve_app.backends.fastvideo.dit_compile import compile_blocks

    if name == "eager-attention":
        os.environ["FASTVIDEO_DISABLE_ATTENTION_COMPILE"] = "1"
    else:
        os.environ.pop("FASTVIDEO_DISABLE_ATTENTION_COMPILE", None)
    torch._dynamo.reset()
    counters.clear()
    compiled = compile_blocks(model)

    def call():
        with torch.no_grad(), set_forward_context(current_timestep=0, attn_metadata=None):
            return model(*inputs)

    for _ in range(2):  # compile, then one warm call
        output = call()
    times = []
    for _ in range(n):
        sync()
        start = time.perf_counter()
        call()
        sync()
        times.append(1000 * (time.perf_counter() - start))
    result = {"compiled": compiled, "ms": round(statistics.median(times), 2), "all_ms": [round(t, 2) for t in times],
              "graphs": int(counters["stats"]["unique_graphs"]),
              "graph_breaks": int(sum(counters["graph_break"].values())), **profile(call)}
    return result, output.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--size", default="1280x704x121", help="WIDTHxHEIGHTxFRAMES")
    parser.add_argument("--variants", default="eager-attention attention-in-graph")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (gloo): does the bench run")
    args = parser.parse_args()
    os.environ.setdefault("FASTVIDEO_ATTENTION_BACKEND", "TORCH_SDPA")
    import torch
    from fastvideo.distributed.parallel_state import init_distributed_environment, initialize_model_parallel
    from torch.nn.attention import SDPBackend, _sdpa_kernel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    init_distributed_environment(world_size=1, rank=0, local_rank=0,
                                 distributed_init_method=f"tcp://127.0.0.1:{port}",
                                 backend="gloo" if args.tiny else "nccl")
    initialize_model_parallel(tensor_model_parallel_size=1, sequence_model_parallel_size=1,
                              backend="gloo" if args.tiny else "nccl")
    _sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                  SDPBackend.MATH], set_priority=True)  # the service's choice on an H200 (choose_attention_kernel)
    if args.tiny:  # the CPU platform names no attention backend: torch's SDPA (as tests/gpu does)
        from fastvideo.platforms import current_platform

        type(current_platform).get_attn_backend_cls = classmethod(
            lambda cls, *a, **k: "fastvideo.attention.backends.sdpa.SDPABackend")
    width, height, frames = (int(v) for v in args.size.split("x"))
    model, inputs = build_dit((frames - 1) // 4 + 1, height, width, "cpu" if args.tiny else "cuda", args.tiny)
    results, reference = {}, None
    for name in args.variants.split():
        results[name], output = run_variant(name, model, inputs, args.n)
        if reference is None:
            reference = output
        else:
            error = (output - reference).abs()
            results[name]["vs_first"] = {"max": round(float(error.max()), 4), "mean": round(float(error.mean()), 5)}
        print(name, json.dumps(results[name])[:1500], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    summary = {"gpu": gpu, "size": args.size, "tokens": int(inputs[2].numel()), "variants": results}
    (out / "dit_step.json").write_text(json.dumps(summary, indent=2))
    rows = [f"DiT forward alone, {summary['gpu']}, {args.size} ({summary['tokens']} tokens), median of {args.n}", "",
            "| variant | ms a forward | x3 steps s | graphs / breaks | GEMM / attention / Triton / other ms "
            "| launches |",
            "|---|---|---|---|---|---|"]
    for name, r in results.items():
        kinds = r["ms_by_kind"]
        rows.append(f"| {name} | {r['ms']} | {3 * r['ms'] / 1000:.2f} | {r['graphs']} / {r['graph_breaks']} | "
                    + " / ".join(str(kinds.get(k, 0)) for k in ("GEMM", "attention", "Triton-fused", "other"))
                    + f" | {r['kernel_launches']} |")
    for name, r in results.items():
        rows += ["", f"{name}: largest kernels", "", "| kernel | kind | calls | ms |", "|---|---|---|---|"]
        rows += [f"| `{t['kernel']}` | {t['kind']} | {t['calls']} | {t['ms']} |" for t in r["top"]]
    (out / "dit_step.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
