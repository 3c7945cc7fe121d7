"""The Wan VAE decoder's causal 3D convolutions, alone: cuDNN's conv3d against the same sums as 2D convolutions.

Half of a 1280x704x121 video's time is the VAE decode, and most of that is 3x3x3 convolutions at up to
640x352 pixels and 1024 channels. This probe records every causal conv of the service's streamed decode
(shapes as the service runs them: one latent frame a call, the causal cache in front), then times each
distinct shape three ways on the GPU:

- `conv3d`: what the service runs (`F.conv3d`, channels-last, spatial padding by cuDNN);
- `fold2d`: one `F.conv2d` over the frames with the three time taps stacked as input channels (the same
  27*C-term sums, one fp32 accumulation: equal within bf16 rounding), at the cost of a copy of the input;
- `taps2d`: three `F.conv2d` over shifted frames, summed (no copy, but the partial sums round to bf16);

each with cuDNN's heuristic choice of algorithm (the service's default) and with its timed search (`+search`).

It prints, per shape, the calls a video, milliseconds and TFLOP/s of each way and its difference from an fp32
reference, and the predicted conv time per video for each; then a CUDA-kernel profile of one decode by the
service's own code. Writes OUT/vae_conv.{json,md}.

    python bench/vae_conv.py --out $OUT
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def record_conv_shapes(vae, z, args) -> collections.Counter:
    """Run the service's streamed decode once and count each causal conv call by (input shape, weight shape)."""
    import torch
    from fastvideo.models.vaes import wanvae

    from serve_app.backends.fastvideo.streaming import StreamingDecodingStage

    calls: collections.Counter = collections.Counter()

    def spy(module, x, cache_x=None):
        frames = x.shape[2] + module._padding[4]  # the cache and zero frames in front, as the conv sees them
        calls[(tuple(x.shape[:2]) + (frames,) + tuple(x.shape[3:]), tuple(module.weight.shape),
               tuple(module._padding[i] for i in (2, 0)))] += 1
        return type(module).forward(module, x, cache_x)

    for module in vae.modules():
        if isinstance(module, wanvae.WanCausalConv3d):
            module.forward = spy.__get__(module)
    try:
        with torch.no_grad():
            for _ in StreamingDecodingStage(vae).decode_chunks(z, args):
                pass
    finally:
        for module in vae.modules():
            if isinstance(module, wanvae.WanCausalConv3d):
                del module.forward
    return calls


def ways(weight, bias, padding):
    """The three ways of one causal conv: functions of a time-padded channels-last (1, C, T+kt-1, H, W) input."""
    import torch
    import torch.nn.functional as F

    kt = weight.shape[2]
    cl = torch.channels_last
    folded = weight.permute(0, 2, 1, 3, 4).reshape(weight.shape[0], -1, *weight.shape[3:]).contiguous(memory_format=cl)
    taps = [weight[:, :, k].contiguous(memory_format=cl) for k in range(kt)]

    def conv3d(x):
        return F.conv3d(x, weight, bias, 1, (0, *padding))

    def frames(x):  # (T+kt-1, C, H, W) channels-last view of a channels-last-3d (1, C, T', H, W)
        return x[0].transpose(0, 1)

    def fold2d(x):
        v = frames(x)
        t = v.shape[0] - kt + 1
        stacked = torch.cat([v[k:k + t] for k in range(kt)], dim=1) if kt > 1 else v
        out = F.conv2d(stacked, folded, bias, 1, padding)
        return out.transpose(0, 1).unsqueeze(0)

    def taps2d(x):
        v = frames(x)
        t = v.shape[0] - kt + 1
        out = F.conv2d(v[kt - 1:kt - 1 + t], taps[kt - 1], bias, 1, padding)
        for k in range(kt - 1):
            out = out + F.conv2d(v[k:k + t], taps[k], None, 1, padding)
        return out.transpose(0, 1).unsqueeze(0)

    return {"conv3d": conv3d, "fold2d": fold2d, "taps2d": taps2d}


WAYS = ("conv3d", "fold2d", "taps2d", "conv3d+search", "fold2d+search", "taps2d+search")


def time_ms(fn, x, n: int) -> float:
    import torch

    for _ in range(2):
        fn(x)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn(x)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--size", default="1280x704")
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    import torch
    import torch.nn.functional as F
    from vae_decode import build_vae, fastvideo_args, service_decode

    from serve_app.backends.fastvideo.streaming import StreamingDecodingStage
    from serve_app.backends.fastvideo.vae import compile_decoder_blocks, speed_up_wan_vae

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    w, h = (int(x) for x in args.size.split("x"))
    torch.manual_seed(0)
    z = torch.randn(1, 48, (args.frames - 1) // 4 + 1, h // 16, w // 16, device="cuda")
    bf16 = fastvideo_args("bf16")
    vae = build_vae(torch.bfloat16)
    speed_up_wan_vae(vae)
    calls = record_conv_shapes(vae, z, bf16)
    rows, results, totals = [], [], collections.Counter()
    for (shape, wshape, padding), count in sorted(calls.items(), key=lambda kv: -kv[1] * kv[0][0][3] * kv[0][0][4]):
        g = torch.Generator(device="cuda").manual_seed(1)
        weight = (torch.randn(wshape, device="cuda", generator=g) / (wshape[1] * wshape[2] * 9) ** 0.5)
        weight = weight.to(torch.bfloat16).contiguous(memory_format=torch.channels_last_3d)
        bias = torch.randn(wshape[0], device="cuda", generator=g).to(torch.bfloat16)
        x = torch.randn(shape, device="cuda", generator=g).to(torch.bfloat16)
        x = x.contiguous(memory_format=torch.channels_last_3d)
        kt = wshape[2]
        t_out = shape[2] - kt + 1
        flop = 2 * wshape[0] * wshape[1] * kt * wshape[3] * wshape[4] * t_out * shape[3] * shape[4]
        with torch.no_grad():
            reference = F.conv3d(x.float(), weight.float(), bias.float(), 1, (0, *padding))
            entry = {"input": shape, "weight": wshape, "calls": count, "gflop": round(flop / 1e9, 1)}
            for benchmark in (False, True):  # cuDNN's heuristics (the service's default), then its timed choice
                torch.backends.cudnn.benchmark = benchmark
                for name, fn in ways(weight, bias, padding).items():
                    diff = (fn(x).float() - reference).abs()
                    ms = time_ms(fn, x, args.n)
                    name += "+search" if benchmark else ""
                    entry[name] = {"ms": round(ms, 3), "tflops": round(flop / ms / 1e9, 1),
                                   "max_diff": round(diff.max().item(), 4), "mean_diff": round(diff.mean().item(), 5)}
                    totals[name] += ms * count
            torch.backends.cudnn.benchmark = False
            del reference, x
        results.append(entry)
        rows.append(f"| {shape} | {wshape[:3]} | {count} | " + " | ".join(
            f"{entry[k]['ms']} ({entry[k]['tflops']}) {entry[k]['max_diff']}/{entry[k]['mean_diff']}"
            for k in WAYS) + " |")
        print(rows[-1], flush=True)
    table = ["| input (1, C, T, H, W) | weight | calls a video | " + " | ".join(
             f"{k} ms (TFLOP/s) max/mean diff" for k in WAYS) + " |", "|---" * (3 + len(WAYS)) + "|", *rows,
             "| **conv time a video, s** | | | " + " | ".join(f"{totals[k] / 1e3:.3f}" for k in WAYS) + " |"]
    text = "\n".join(table)
    print(text, flush=True)
    summary = {"gpu": torch.cuda.get_device_name(0), "shapes": results,
               "conv_s_per_video": {k: round(v / 1e3, 3) for k, v in totals.items()}}
    if not args.no_profile:  # the service's decode (compiled blocks as shipped), kernel by kernel
        from torch.profiler import ProfilerActivity, profile

        compile_decoder_blocks(vae)
        stage = StreamingDecodingStage(vae)
        for _ in range(2):
            service_decode(stage, z, bf16)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            service_decode(stage, z, bf16)
            torch.cuda.synchronize()
        kernels = prof.key_averages()
        total = sum(k.self_device_time_total for k in kernels)
        conv = sum(k.self_device_time_total for k in kernels if any(s in k.key.lower() for s in
                                                              ("conv", "xmma", "cutlass", "implicit", "wgrad", "dgrad")))
        summary["profile"] = {"cuda_total_s": round(total / 1e6, 3), "conv_like_s": round(conv / 1e6, 3)}
        text += (f"\n\nService decode, compiled blocks, profiled: CUDA time {total / 1e6:.3f} s, "
                 f"conv-like kernels {conv / 1e6:.3f} s\n\n```\n"
                 + kernels.table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=90) + "\n```\n")
        print(text[text.index("Service decode"):], flush=True)
    (out / "vae_conv.md").write_text(text + "\n")
    (out / "vae_conv.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
