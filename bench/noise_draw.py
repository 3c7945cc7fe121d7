"""The initial noise of one 1280x704x121 video as FastVideo draws it: how long the GPU waits for it.

FastVideo's latent stage draws 5.2 million normal numbers on the CPU from the seed's CPU generator (the same
video on every card), then copies them to the GPU, between the text encoder and the denoise. This times that
stage as FastVideo runs it (its own LatentPreparationStage, the TI2V-5B latent shape) in the text encoder's
two possible dtypes, its parts (the CPU draw, the copy), the same draw in threads (chunked_randn.py), and the
service's stage (backends/fastvideo/noise.py) drawing in threads, alone and taking a draw started `--head-start`
ms earlier (the text encoder's time, about 50 ms in the service).
Writes OUT/noise_draw.{json,md}.

    python bench/noise_draw.py --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, n: int) -> float:
    """Median milliseconds of `fn` over n calls, the GPU synchronized around each."""
    import torch

    times = []
    for _ in range(n):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--head-start", type=float, default=50.0, help="ms the prefetch starts before the stage")
    args = parser.parse_args()
    import torch
    import fastvideo.pipelines.stages.latent_preparation as latent_module
    from fastvideo.configs.pipelines.wan import FastWan2_2_TI2V_5B_Config
    from fastvideo.models.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from fastvideo.pipelines import ForwardBatch
    from fastvideo.pipelines.stages import InputValidationStage, LatentPreparationStage

    from serve_app.backends.fastvideo import chunked_randn
    from serve_app.backends.fastvideo.noise import install_noise_draw, prefetching_latent_stage, start_prefetch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    latent_module.get_local_torch_device = lambda: device  # the worker's device (FastVideo's CPU answer is mps)
    config = FastWan2_2_TI2V_5B_Config()
    config.vae_config.arch_config.spatial_compression_ratio = 16  # the Wan2.2 VAE's (the model's files say so)
    fv_args = SimpleNamespace(pipeline_config=config)
    stock = LatentPreparationStage(scheduler=FlowMatchEulerDiscreteScheduler(shift=config.flow_shift),
                                   transformer=SimpleNamespace(num_channels_latents=48))
    prefetching = prefetching_latent_stage(stock)

    def through(stage, dtype, head_start_ms: float = 0.0):
        """One request's seeds, text (its dtype) and latent stage: the stage's milliseconds."""
        b = ForwardBatch(data_type="video", prompt="a red car", seed=1, height=704, width=1280, num_frames=121,
                         num_inference_steps=3)
        if head_start_ms:
            start_prefetch(stage, b, fv_args)
            time.sleep(head_start_ms / 1000)  # the text encoder's time, in which the thread draws
        b = InputValidationStage().forward(b, fv_args)
        b.prompt_embeds = [torch.zeros(1, 8, 8, dtype=dtype, device=device)]
        start = time.perf_counter()
        stage.forward(b, fv_args)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1000

    shape = (1, 48, 31, 44, 80)
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "cpu_threads": torch.get_num_threads(), "shape": shape, "head_start_ms": args.head_start}
    rows = {}
    for dtype in (torch.float32, torch.bfloat16):
        cpu = torch.randn(shape, dtype=dtype)
        rows[dtype] = {
            "FastVideo's stage (ms)": round(statistics.median(through(stock, dtype) for _ in range(args.n)), 1),
            "CPU draw alone (ms)": timed(lambda: torch.randn(shape, dtype=dtype,
                                                             generator=torch.Generator().manual_seed(1)), args.n),
            f"CPU draw in {chunked_randn.PARTS} threads (ms)": timed(
                lambda: chunked_randn.randn(shape, torch.Generator().manual_seed(1), dtype), args.n),
            "copy to the GPU (ms)": timed(lambda: cpu.to(device), args.n),
        }
    result["install"] = install_noise_draw()  # from here FastVideo's stage draws in threads
    for dtype, row in rows.items():
        row["the stage, drawing in threads (ms)"] = round(statistics.median(
            through(stock, dtype) for _ in range(args.n)), 1)
        through(prefetching, dtype)  # the first request teaches the dtype
        taken = prefetching.prefetched_draws
        row[f"the stage, drawn ahead by {args.head_start:.0f} ms (ms)"] = round(statistics.median(
            through(prefetching, dtype, args.head_start) for _ in range(args.n)), 1)
        row["draws taken"] = f"{prefetching.prefetched_draws - taken} of {args.n}"
        result[str(dtype).removeprefix("torch.")] = row
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "noise_draw.json").write_text(json.dumps(result, indent=2))
    keys = list(result["float32"])
    lines = [f"noise draw on {result['device']} (torch {result['torch']}), latent {shape}",
             "", "| dtype | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {d} | " + " | ".join(str(result[d][k]) for k in keys) + " |" for d in ("float32", "bfloat16")]
    (out / "noise_draw.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
