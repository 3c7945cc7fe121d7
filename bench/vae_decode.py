"""The Wan2.2 VAE decode at 1280x704x121 on one GPU: FastVideo's own against our fused kernels and streaming.

One process, the full-size TI2V-5B VAE with random weights (the real shapes; no model folder needed),
the same latent for every variant. Each variant: one warm-up decode (compiles, cuDNN autotuning), then
--n timed ones. Prints a markdown table, writes OUT/vae_decode.{json,md} and a CUDA-kernel profile of the
stock and the fused decode (OUT/vae_profile.txt).

    python bench/vae_decode.py --n 2 --out $OUT
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


DEVICE = "cuda"  # FastVideo's decoding stage moves the VAE to the CUDA device itself


def sync():
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def build_vae(dtype):
    import torch
    from fastvideo.configs.models.vaes import WanVAEConfig
    from fastvideo.configs.models.vaes.wanvae import WanVAEArchConfig
    from fastvideo.models.vaes.wanvae import AutoencoderKLWan

    from serve_app.models.full import VAE

    torch.manual_seed(0)
    arch = WanVAEArchConfig(**{**VAE, "dim_mult": tuple(VAE["dim_mult"]),
                               "temperal_downsample": tuple(VAE["temperal_downsample"])},
                            latents_mean=(0.0,) * 48, latents_std=(1.0,) * 48)
    config = WanVAEConfig(arch_config=arch)
    config.load_encoder = False
    vae = AutoencoderKLWan(config).eval().to(DEVICE, dtype)
    for module in vae.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.weight.data = module.weight.data.to(memory_format=torch.channels_last_3d)
    return vae


def fastvideo_args(precision: str):
    config = SimpleNamespace(vae_decode_precision=precision, vae_precision=precision, vae_tiling=False)
    return SimpleNamespace(pipeline_config=config, disable_autocast=False, vae_cpu_offload=False)


def timed(fn, n: int) -> dict:
    import torch

    sync()
    t = time.perf_counter()
    fn()
    sync()
    warmup = time.perf_counter() - t
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 1e9 if DEVICE == "cuda" else 0.0
    return {"median_s": round(statistics.median(times), 3), "times": [round(x, 3) for x in times],
            "warmup_s": round(warmup, 1), "peak_gb": round(peak, 2)}


def difference(video, stage, z, args, base: str) -> dict:
    """Largest and mean difference of a decoded video from `stage`'s whole decode of the same latent."""
    import torch

    with torch.no_grad():
        diff = (video - stage.decode(z, args)).abs()
    return {f"max_abs_diff_vs_{base}": round(diff.max().item(), 5),
            f"mean_abs_diff_vs_{base}": round(diff.mean().item(), 6)}


KERNEL_KINDS = (  # (kind, substrings of a CUDA kernel's name), first match wins
    ("conv", ("conv", "fprop", "dgrad", "implicit", "xmma", "cudnn", "sm90_", "cutlass")),
    ("compiled (triton)", ("triton",)),
    ("copy / cat / layout", ("copy", "cat", "nchw", "nhwc", "transpose", "memcpy", "memset")),
    ("elementwise (eager)", ("elementwise", "vectorized", "reduce", "upsample", "fill")),
)


def profile_kernels(fn, path: Path) -> dict:
    """One call profiled: its CUDA kernels' time by kind, and the 40 slowest kernels in `path`."""
    from torch.profiler import ProfilerActivity, profile

    sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        sync()
    kinds: dict = {}
    for event in prof.key_averages():
        total = getattr(event, "self_device_time_total", None)
        total = event.self_cuda_time_total if total is None else total
        if total <= 0:
            continue
        low = event.key.lower()
        kind = next((k for k, marks in KERNEL_KINDS if any(m in low for m in marks)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + total / 1e3
    kinds = {k: round(v, 1) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}
    kinds["all kernels"] = round(sum(kinds.values()), 1)
    path.write_text(f"{json.dumps(kinds)}\n"
                    f"{prof.key_averages().table(sort_by='self_cuda_time_total', row_limit=40, max_name_column_width=90)}\n")
    return kinds


def chunked_decode(stage, z, args, k: int):
    """FastVideo's streaming decode, k latent frames a call (the service streams one a call)."""
    import torch

    cache, chunks = None, []
    with torch.no_grad():
        for i in range(0, z.shape[2], k):
            chunk, cache = stage.streaming_decode(z[:, :, i:i + k], args, cache, is_first_chunk=i == 0)
            chunks.append(chunk)
    return torch.cat(chunks, dim=2)


def service_decode(stage, z, args):
    """The service's chunk loop (streaming.py: the first chunk eager, the caches padded), frames concatenated."""
    import torch

    with torch.no_grad():
        return torch.cat(list(stage.decode_chunks(z, args)), dim=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--size", default="1280x704")
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--variants", default="fp32 stock upsample padding fused all stream")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--cudnn-benchmark", type=int, default=1, help="0: cuDNN's heuristics (the service's default)")
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    parser.add_argument("--tag", default="", help="suffix of the output files (a second pass with a warm cache)")
    args = parser.parse_args()
    import torch
    from fastvideo.pipelines.stages.decoding import DecodingStage

    from serve_app.backends.fastvideo.streaming import VIDEO_SINK, StreamingDecodingStage, StreamingEncoder
    from serve_app.backends.fastvideo.worker_ops import Delivery
    from serve_app.backends.fastvideo.vae import FUSED_SHORTCUT_ENV, compile_decoder_blocks, speed_up_wan_vae
    from serve_app.media.video import encode_mp4
    from serve_app.media.yuv import rgb_to_i420

    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    w, h = (int(x) for x in args.size.split("x"))
    z = torch.randn(1, 48, (args.frames - 1) // 4 + 1, h // 16, w // 16, device=DEVICE)
    stock = build_vae(torch.bfloat16)
    options = {"stock": {}, "before": dict(upsample_blocks=False), "upsample": dict(fuse_norms=False, conv_padding=False),
               "padding": dict(fuse_norms=False, native_upsample=False),
               "fused": dict(native_upsample=False, conv_padding=False), "all": {}, "stream": {}}
    results, reference, vaes, first_compiled = {}, None, {}, None
    bf16 = fastvideo_args("bf16")
    for name in args.variants.split():
        if name == "fp32":
            vae = build_vae(torch.float32)
            stage = DecodingStage(vae)
            results[name] = timed(lambda: stage.decode(z, fastvideo_args("fp32")), args.n)
            del vae, stage
            torch.cuda.empty_cache()
        elif name == "stream":  # all kernels; decode chunk by chunk into the encoder thread (ends with the MP4)
            vae = vaes.get("all") or copy.deepcopy(stock)
            if "all" not in vaes:
                speed_up_wan_vae(vae)
            stage = StreamingDecodingStage(vae)
            tails = []

            def stream():
                path = Path(tempfile.mkstemp(suffix=".mp4")[1])
                sink = StreamingEncoder(path, Delivery(width=1280, height=704, encode=True))
                stage.forward(SimpleNamespace(latents=z, extra={VIDEO_SINK: sink}), bf16)
                tails.append(sink.finish())
                path.unlink()

            results[name] = timed(stream, args.n)
            results[name]["encode_tail_s"] = [round(x, 3) for x in tails[1:]]
        elif name.startswith("chunk") or name.startswith("compiled"):  # k latent frames a call / compiled blocks
            vae = copy.deepcopy(stock)
            # compiled: the service's blocks and chunk loop; -all: every residual block; -upblocks: each up-block
            # whole; -plain: the service's blocks in FastVideo's own loop (three chunk shapes: before);
            # -before: without the folded upsampling and shortcut views (before run 33); -add-apart: the
            # upsampler's interleave and the shortcut add as two eager passes (before run 48)
            apart = name.endswith("-add-apart")
            os.environ[FUSED_SHORTCUT_ENV] = "0" if apart else "1"
            speed_up_wan_vae(vae, upsample_blocks=not name.endswith("-before"))
            os.environ.pop(FUSED_SHORTCUT_ENV)
            if name.startswith("compiled"):
                base = name.removesuffix("-before").removesuffix("-add-apart")
                blocks = {"compiled-all": "all", "compiled-upblocks": "up-blocks"}.get(base, "high-resolution")
                results.setdefault("kernels", {})[name] = compile_decoder_blocks(vae, blocks)
            stage = StreamingDecodingStage(vae)
            k = int(name.removeprefix("chunk")) if name.startswith("chunk") else 1
            plain = not name.startswith("compiled") or name == "compiled-plain"

            def decode(latents):
                return chunked_decode(stage, latents, bf16, k) if plain else service_decode(stage, latents, bf16)

            try:
                graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
                sync()
                t = time.perf_counter()
                decode(z[:, :, :3])  # what the service's warm-up decodes
                sync()
                warm = {"warmup_decode_s": round(time.perf_counter() - t, 2)}
                results[name] = {**timed(lambda: decode(z), args.n), **warm,
                                 "graphs": torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs}
                if args.profile:  # the decode as the service runs it, kernel by kernel (what is not a conv)
                    results[name]["kernels_ms"] = profile_kernels(lambda: decode(z), out / f"vae_profile-{name}.txt")
                video = decode(z)
                base = "all" if "all" in vaes else next(iter(vaes), None)  # else the first eager variant
                if base is not None:
                    results[name].update(difference(video, DecodingStage(vaes[base]), z, bf16, base))
                elif first_compiled is None:  # no eager variant: against the first compiled one
                    first_compiled = (name, video)
                else:
                    diff = (video.float() - first_compiled[1].float()).abs()
                    results[name].update({f"max_abs_diff_vs_{first_compiled[0]}": round(diff.max().item(), 5),
                                          f"mean_abs_diff_vs_{first_compiled[0]}": round(diff.mean().item(), 6),
                                          "bit_equal": bool(torch.equal(video, first_compiled[1]))})
                    del diff
                del video
            except Exception as exc:  # noqa: BLE001 - an experiment that cannot run says why
                results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            del vae, stage
            torch.cuda.empty_cache()
        else:
            vae = stock if name == "stock" else copy.deepcopy(stock)
            if name != "stock":
                results.setdefault("kernels", {})[name] = speed_up_wan_vae(vae, **options[name])
            vaes[name] = vae
            stage = DecodingStage(vae)
            results[name] = timed(lambda: stage.decode(z, bf16), args.n)
            with torch.no_grad():
                video = stage.decode(z, bf16)
            if name == "stock":
                reference = video
                frames = rgb_to_i420(video.permute(0, 2, 1, 3, 4))[0].cpu().numpy()
                t = time.perf_counter()
                encode_mp4(frames, 24, out / "noise.mp4", crf=18, preset="veryfast")
                results["sequential MP4 encode"] = {"median_s": round(time.perf_counter() - t, 3),
                                                   "bytes": (out / "noise.mp4").stat().st_size}
                (out / "noise.mp4").unlink()
            elif reference is not None:
                diff = (video - reference).abs()
                results[name]["max_abs_diff_vs_stock"] = round(diff.max().item(), 5)
                results[name]["mean_abs_diff_vs_stock"] = round(diff.mean().item(), 6)
            elif (base := next(iter(vaes))) != name:  # no stock: against the first variant
                results[name].update(difference(video, DecodingStage(vaes[base]), z, bf16, base))
            del video
        print(name, json.dumps(results[name]), flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with open(out / "vae_profile.txt", "w") as f:
            for name in ("stock", "all"):
                if name not in vaes:
                    continue
                stage = DecodingStage(vaes[name])
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    stage.decode(z, bf16)
                    sync()
                f.write(f"== {name}\n{prof.key_averages().table(sort_by='cuda_time_total', row_limit=18)}\n")
    rows = [f"| VAE decode variant at {w}x{h}x{args.frames} (bf16 autocast, channels-last, cuDNN autotune unless named) "
            "| median s | runs s | peak GB | max / mean abs diff |", "|---|---|---|---|---|"]
    for name, r in results.items():
        if name == "kernels" or "times" not in r:
            rows += [f"| {name} | {r['error']} | | | |"] if "error" in r else []
            continue
        base = next((k.removeprefix("max_abs_diff_vs_") for k in r if k.startswith("max_abs_diff_vs_")), None)
        diff = f"{r[f'max_abs_diff_vs_{base}']} / {r[f'mean_abs_diff_vs_{base}']} (vs {base})" if base else "-"
        extra = f" (warm-up decode {r['warmup_decode_s']} s, {r['graphs']} graphs)" if "graphs" in r else ""
        rows.append(f"| {name}{extra} | {r['median_s']} | {r['times']} | {r['peak_gb']} | {diff} |")
    for name, r in results.items():
        if isinstance(r, dict) and "kernels_ms" in r:
            rows.append(f"| {name}: GPU kernel ms by kind (one decode, profiled) | {r['kernels_ms']} | | | |")
    if "sequential MP4 encode" in results:
        rows.append(f"| (MP4 encode of the stock output, after it: {results['sequential MP4 encode']['median_s']} s, "
                    f"{results['sequential MP4 encode']['bytes'] / 1e6:.1f} MB) | | | | |")
    text = "\n".join(rows)
    print(text)
    (out / f"vae_decode{args.tag}.md").write_text(text + "\n")
    gpu = torch.cuda.get_device_name(0) if DEVICE == "cuda" else DEVICE
    (out / f"vae_decode{args.tag}.json").write_text(json.dumps({"gpu": gpu, **results}, indent=2))


if __name__ == "__main__":
    main()
