"""Full-size FastWan2.2 speed and memory on one GPU: bare FastVideo against this service, same run.

Modes (each runs in its own process, so each starts with a clean GPU; results go to OUT/<mode>.json):
  bare        FastVideo's VideoGenerator as its docs show it (mp executor), no offload, its default precisions
  bare-same   the same VideoGenerator at this service's model settings (bf16 text encoder and VAE, fused VAE
              kernels, cuDNN autotuning, and with --compile/--channels-last those): frames in hand, no MP4
  variants    this service's backend (Ray executor): VAE decode fp32 -> bf16 -> + torch.compile, one load
  cap32       this service's 32 GB profile under a 32 GB memory cap (torch.cuda.set_per_process_memory_fraction)
  uncapped    cap32's baseline: the same backend and options with the speed profile and no cap
  service     `serve run configs/serve.yaml` (in scripts/box.sh): cold start, then HTTP submit -> MP4 stored
  bare-load   bare-same's start only: process start -> generator loaded (the cold-start baseline)
  cold        service's start only: launch -> /ready 200, with the generator's own load and self-check times
  before      service as before issue 17's lossless changes (torch's attention order, VAE not compiled): the baseline
              that `compare` holds the quality profile's frames against
  fp8         service in the fast profile without a light decoder: FP8 DiT linears, the Wan VAE
  fast        service in the fast profile: FP8 DiT linears and the light decoder (--light-decoder, random weights)
  no-channels-last  service with the VAE's convs in the contiguous layout (what the bench ran before run 34)
  eager-attention   service with the DiT's attention outside its compiled blocks (FastVideo's boundary, before run 36)
  eager-noise       service with the initial noise drawn in FastVideo's latent stage, not ahead (before run 39)
  vae-add-apart     service with the VAE upsamplers' interleave and shortcut add as two eager passes (before run 48)
  bare-sp2    bare-same over two GPUs (FastVideo's sequence parallelism; its decode on the first GPU)
  sp2         service, one replica over two GPUs (gpus_per_replica: 2): the DiT and the VAE decode split
  sp2-wide    sp2 with the decode's one wide halo (FASTWAN_SPLIT_DECODE=wide), not narrow halos exchanged
  compare     seed-1 frames of service-2 / eager-noise / vae-add-apart / sp2 / sp2-wide / before / fp8 / fast against service's: PSNR, max and mean difference
  report      merge the JSON files into a markdown table and a stage plot (PNG)
A mode given twice runs twice (results <mode>.json, <mode>-2.json, ...): `bare-load cold bare-load cold`.

    python bench/gpu_bench.py --model-dir /tmp/full --out $OUT bare variants cap32
    python bench/gpu_bench.py --out DIR report
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from start_timeline import describe, timeline  # noqa: E402 - bench/ is this script's own folder

SIZE = dict(width=1280, height=704, num_frames=121)
# Over several GPUs in box.sh's 64 MiB /dev/shm: NCCL's log names each channel's transport (P2P, SHM, NET) and any
# shared-memory segment it could not make (docs/scaling.md: NCCL_SHM_DISABLE=1 is the fix there)
NCCL_REPORT = {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,ALLOC"}
PROMPT = "a corgi running along a beach at sunset, waves, cinematic"


def _video_params(seed):
    from serve_app.contracts import GenerationParams

    return GenerationParams(prompt=PROMPT, fps=24, num_inference_steps=3, guidance_scale=1.0, seed=seed, **SIZE)


def _gpu_name():
    import torch

    return torch.cuda.get_device_name(0)


def run_bare(args, same_settings: bool, load_only: bool = False, gpus: int = 1) -> dict:
    """FastVideo alone: load, one warm-up video, then timed ones; frames in hand (return_frames).
    `gpus` > 1: FastVideo's own sequence parallelism over that many GPUs (the baseline of gpus_per_replica)."""
    os.environ["FASTVIDEO_STAGE_LOGGING"] = "1"
    if gpus > 1:
        os.environ.update(NCCL_REPORT)
    from fastvideo import VideoGenerator

    from serve_app.backends.fastvideo.paths import fastvideo_model_path

    path = fastvideo_model_path(Path(args.model_dir), Path("/tmp/links"))
    extra = dict(text_encoder_precisions=("bf16",)) if same_settings else {}
    t = time.perf_counter()
    gen = VideoGenerator.from_pretrained(str(path), num_gpus=gpus, sp_size=gpus, distributed_executor_backend="mp",
                                         dit_cpu_offload=False, dit_layerwise_offload=False,
                                         text_encoder_cpu_offload=False, vae_cpu_offload=False,
                                         image_encoder_cpu_offload=False, **extra)
    if same_settings:  # the service's model settings (bf16 VAE, cuDNN's choice, fused VAE kernels, compile)
        from serve_app.backends.fastvideo import worker_ops as fw
        from serve_app.settings.sections import FastVideoSettings

        gen.executor.collective_rpc(fw.set_vae_precision, kwargs={"precision": "bf16"})
        gen.executor.collective_rpc(fw.set_cudnn_benchmark,
                                    kwargs={"enabled": FastVideoSettings().cudnn_benchmark})
        gen.executor.collective_rpc(fw.speed_up_vae, kwargs={"compiled": args.compile})
        from serve_app.backends.fastvideo.request import attention_tokens

        gen.executor.collective_rpc(fw.choose_attention_kernel, kwargs={"preference": args.attention,
                                                                         "tokens": attention_tokens(**SIZE)})
        if args.channels_last:
            gen.executor.collective_rpc(fw.set_vae_channels_last)
        if args.compile:
            gen.executor.collective_rpc(fw.compile_transformer)
    load_s, ready_s = time.perf_counter() - t, time.perf_counter() - START
    if load_only:
        return {"load_s": round(load_s, 1), "process_to_ready_s": round(ready_s, 1), "gpu": _gpu_name()}
    runs = []
    for seed in range(args.n + 1):
        t = time.perf_counter()
        out = gen.generate_video(PROMPT, seed=seed, save_video=False, return_frames=True,
                                 num_inference_steps=3, fps=24, **SIZE)
        seconds = time.perf_counter() - t
        info = out.get("logging_info")
        stages = {k: round(v.get("execution_time", 0), 3) for k, v in getattr(info, "stages", {}).items()}
        runs.append({"seconds": round(seconds, 3), "stages": stages,
                     "peak_gb": round((out.get("peak_memory_mb") or 0) / 1024, 2)})
    gen.executor.shutdown()
    return {"load_s": round(load_s, 1), "process_to_ready_s": round(ready_s, 1), "runs": runs[1:],
            "warmup": runs[0], "gpu": _gpu_name()}


def _backend(args, **overrides):
    import ray

    from serve_app.backends import create_backend
    from serve_app.settings import Settings

    ray.init(include_dashboard=False, _temp_dir="/tmp/rb", ignore_reinit_error=True)
    settings = Settings(backend="fastvideo", model=args.model_dir, device="cuda", **overrides).resolve(gpus=1)
    backend = create_backend(settings)
    t = time.perf_counter()
    backend.load()
    return backend, time.perf_counter() - t


def _timed(backend, n, image: bytes | None = None) -> dict:
    runs = []
    for seed in range(n + 1):
        t = time.perf_counter()
        params = _video_params(seed).model_copy(update={"image_png": image})
        video = backend.generate([params], lambda *_: None)[0]
        runs.append({"seconds": round(time.perf_counter() - t, 3), "stages": video.stages,
                     "peak_gb": video.peak_vram_gb})
    return {"runs": runs[1:], "warmup": runs[0]}


def run_variants(args) -> dict:
    """One load (speed profile, bf16 VAE), then: as loaded; + torch.compile; + an image (TI2V) on top."""
    from serve_app.backends.fastvideo import worker_ops
    from serve_app.media.images import solid_png

    backend, load_s = _backend(args, memory_profile="speed", vae_precision="bf16")
    out = {"load_s": round(load_s, 1), "gpu": _gpu_name(), "variants": {}}
    out["variants"]["vae bf16"] = _timed(backend, args.n)
    t = time.perf_counter()
    try:
        backend.run_in_worker(worker_ops.compile_transformer)
        out["variants"]["vae bf16 + compile"] = _timed(backend, args.n)
        out["variants"]["vae bf16 + compile"]["first_call_s"] = round(time.perf_counter() - t, 1)
    except Exception as exc:  # noqa: BLE001 - recorded, the other variants still count
        out["compile_error"] = f"{type(exc).__name__}: {exc}"[:2000]
    image = solid_png(SIZE["width"], SIZE["height"], (200, 120, 40))
    out["variants"]["vae bf16 + compile, image-to-video"] = _timed(backend, args.n, image=image)
    backend.close()
    return out


def run_cap32(args, capped: bool = True) -> dict:
    cap = dict(memory_profile="auto", gpu_memory_limit_gb=32) if capped else dict(memory_profile="speed")
    backend, load_s = _backend(args, vae_precision="bf16", torch_compile=args.compile,
                               vae_channels_last=args.channels_last, **cap)
    assert backend.options["memory_profile"] == ("fit-32gb" if capped else "speed"), backend.options
    out = {"load_s": round(load_s, 1), "gpu": _gpu_name(), "limit_gb": 32 if capped else None, "compile": args.compile,
           "worker": backend.worker.model_dump(), **_timed(backend, args.n)}
    backend.close()
    return out


def run_load(args, omp_threads: str | None) -> dict:
    """Only the service backend's load (Ray executor), with Ray's OMP_NUM_THREADS default or a set value."""
    if omp_threads:
        os.environ["OMP_NUM_THREADS"] = omp_threads  # before ray.init: the raylet passes it to the GPU worker
    backend, load_s = _backend(args, memory_profile="speed", torch_compile=False)
    out = {"load_s": round(load_s, 1), "omp_num_threads": omp_threads, "worker": backend.worker.model_dump(), "gpu": _gpu_name()}
    backend.close()
    return out


def run_service(args, cold_only: bool = False, replicas: int = 1, overrides: dict | None = None,
                extra_env: dict | None = None) -> dict:
    """`serve run` the shipped config with the full-size model; HTTP submit -> completed (MP4 stored).
    With --burst N: N jobs sent at once once every replica has warmed up (throughput over `replicas` GPUs).
    `overrides`: serve.yaml args of this configuration (its speed profile, attention kernel); `extra_env`:
    variables for its processes (the GPU worker inherits them)."""
    import signal
    import tempfile

    import httpx
    import yaml

    work = Path(tempfile.mkdtemp(prefix="svc-"))
    config = yaml.safe_load((ROOT / "configs/serve.yaml").read_text())
    app = config["applications"][0]
    app["args"].update(model=args.model_dir, storage_url=f"file://{work}/data", torch_compile=args.compile,
                       vae_channels_last=args.channels_last)
    app["args"].update(overrides or {})
    if args.compile_cache:  # shared by the runs of one bench: the first fills it, the next ones start from it
        app["args"]["compile_cache_dir"] = args.compile_cache
    if replicas != 1:
        app["deployments"].append({"name": "Generator", "num_replicas": replicas})
    (work / "serve.yaml").write_text(yaml.safe_dump(config))
    base = f"http://127.0.0.1:{config['http_options']['port']}"
    cmd = ["scripts/box.sh", sys.executable, "-m", "serve_app.launch", str(work / "serve.yaml")]  # as the container
    env = {"FASTVIDEO_ATTENTION_BACKEND": "TORCH_SDPA", **os.environ,  # Ray's workers inherit the launcher's env
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="svr-", dir="/tmp"), **(extra_env or {})}
    if os.environ.get("STALLWATCH"):  # every process reports GIL or scheduling stalls (bench/stallwatch)
        env.update(STALLWATCH_S=os.environ["STALLWATCH"],
                   PYTHONPATH=f"{ROOT / 'bench/stallwatch'}:{env.get('PYTHONPATH', '')}")
    log_path = Path(args.out) / f"{args.name or 'service'}_run.log"
    log = open(log_path, "wb")
    t0, launched_at = time.perf_counter(), time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    out: dict = {"gpu": _gpu_name()}
    try:
        while True:
            if proc.poll() is not None or time.perf_counter() - t0 > 420:
                raise RuntimeError("serve run did not become ready")
            try:
                if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)  # a /ready that waits on a loading generator already takes 2 s
        out["cold_start_s"], seen_at = round(time.perf_counter() - t0, 1), time.time()
        out["ready"] = httpx.get(f"{base}/ready", timeout=5).json()
        generator = out["ready"]["generator"]
        out["generator_load_s"], out["selfcheck_s"] = generator["load_sec"], generator["selfcheck_sec"]
        out["http_lag_s"] = round(seen_at - generator["ready_at"], 2)  # replica ready -> a poller sees 200
        out["prestarted_worker"] = generator["info"]["details"].get("prestarted_worker")
        out["early_vae"] = generator["info"]["details"].get("early_vae")
        out["warmup_sec"], out["warmup_parts"] = generator.get("warmup_sec"), generator.get("warmup_parts")
        details = generator["info"]["details"]
        out["attention"] = {k: v for k, v in details.items() if k.startswith("attention")}
        out["compile_cache_files_at_start"] = details.get("compile_cache_files_at_start")
        time.sleep(1)  # Ray's log monitor forwards the replicas' lines to the launcher's output within a second
        out["timeline"] = timeline(log_path.read_text(errors="replace"), launched_at)
        out["timeline"]["poller's 200"] = round(seen_at - launched_at, 2)
        if cold_only:
            return out
        if args.burst:
            out.update(burst(base, work, args.burst, replicas, t0))
            return out
        if args.after_warmup:  # time the steady state: the background warm-up (compiles) has finished
            while httpx.get(f"{base}/ready", timeout=5).json()["generator"]["warmup"] == "running":
                time.sleep(1)
            out["warmup_done_after_start_s"] = round(time.perf_counter() - t0, 1)
        runs = []  # without --after-warmup the first video is sent as soon as /ready says 200
        with httpx.Client(timeout=600) as client:
            for seed in range(args.n + 1):
                t = time.perf_counter()
                job = client.post(f"{base}/v1/videos", headers={"Prefer": "wait=500"},
                                  json={"prompt": PROMPT, "size": "1280x704", "num_frames": 121, "seed": seed}).json()
                seconds = time.perf_counter() - t
                assert job["status"] == "completed", job
                assert (work / "data" / "videos" / f"{job['id']}.mp4").stat().st_size > 0
                if seed == 0:  # the cold-start figure: launch -> the first video stored
                    out["launch_to_first_video_s"] = round(time.perf_counter() - t0, 1)
                if seed == 1:  # kept for `compare`: the same seed in every configuration
                    out["sample_mp4"] = str(work / "data" / "videos" / f"{job['id']}.mp4")
                runs.append({"seconds": round(seconds, 3), "metrics": job["metrics"]})
            # image-to-video: the same request with a reference image (costs one VAE encode)
            import base64

            from serve_app.media.images import solid_png

            image = "data:image/png;base64," + base64.b64encode(solid_png(1280, 704, (200, 120, 40))).decode()
            i2v = []
            for seed in range(1, args.i2v + 1):  # a second one is clean even if the first still compiled
                t = time.perf_counter()
                job = client.post(f"{base}/v1/videos", headers={"Prefer": "wait=500"},
                                  json={"prompt": PROMPT, "size": "1280x704", "num_frames": 121, "seed": seed,
                                        "input_reference": image}).json()
                assert job["status"] == "completed", job
                i2v.append({"seconds": round(time.perf_counter() - t, 3), "metrics": job["metrics"]})
            out["image_to_video"] = i2v
        out["ready_after"] = httpx.get(f"{base}/ready", timeout=5).json()
        out["runs"], out["warmup"] = runs[1:], runs[0]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return out


def burst(base: str, work: Path, jobs: int, replicas: int, launched: float) -> dict:
    """Wait until every replica has warmed up, send `jobs` videos at once, wait for all: throughput."""
    import concurrent.futures

    import httpx

    while True:
        counts = httpx.get(f"{base}/ready", timeout=5).json()["generators"]
        if counts.get("ready") == replicas and not counts.get("warming_up"):
            break
        time.sleep(0.5)
    all_warm_s = round(time.perf_counter() - launched, 1)

    def one(seed: int) -> dict:
        with httpx.Client(timeout=900) as client:
            job = client.post(f"{base}/v1/videos", json={"prompt": PROMPT, "size": "1280x704", "num_frames": 121,
                                                         "seed": seed}).json()
            while job["status"] not in ("completed", "failed"):
                job = client.get(f"{base}/v1/videos/{job['id']}", headers={"Prefer": "wait=60"}).json()
        assert job["status"] == "completed", job
        assert (work / "data" / "videos" / f"{job['id']}.mp4").stat().st_size > 0
        return {"done_at": time.perf_counter(), "metrics": job["metrics"]}

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, range(jobs)))
    wall = max(r["done_at"] for r in results) - start
    per_video = [r["metrics"]["generation_sec"] for r in results]
    return {"replicas": replicas, "jobs": jobs, "all_replicas_warm_s": all_warm_s, "burst_wall_s": round(wall, 2),
            "videos_per_min": round(jobs / wall * 60, 2), "generation_sec_median": statistics.median(per_video),
            "by_replica": {r: sum(1 for x in results if x["metrics"]["replica"] == r)
                           for r in {x["metrics"]["replica"] for x in results}},
            "first_done_after_launch_s": round(min(r["done_at"] for r in results) - launched, 1),
            "per_job": [{k: r["metrics"][k] for k in ("generation_sec", "total_sec", "queue_sec", "replica")}
                        for r in results]}


def compare_frames(out_dir: Path) -> dict:
    """Each configuration's seed-1 video against the quality profile's (`service`), frame by frame (decoded MP4s,
    so both carry the same H.264 loss): PSNR and the largest and mean differences in 0-255 levels."""
    import numpy as np

    from serve_app.media.video import probe_mp4

    def frames(name: str):
        path = out_dir / f"{name}.json"
        sample = json.loads(path.read_text()).get("sample_mp4") if path.exists() else None
        return probe_mp4(Path(sample).read_bytes())[1].astype(np.float32) if sample else None

    reference, result = frames("service"), {}
    for name in ("service-2", "eager-noise", "vae-add-apart", "sp2", "sp2-wide", "sp2-eager-attention", "before", "fp8", "fast"):
        other = frames(name) if reference is not None else None
        if other is None or other.shape != reference.shape:
            continue
        error = np.abs(other - reference)
        mse = float((error ** 2).mean())
        result[name] = {"psnr_db": round(10 * np.log10(255 ** 2 / mse), 2) if mse else "identical",
                        "max_diff": float(error.max()), "mean_diff": round(float(error.mean()), 3),
                        "frames": int(reference.shape[0])}
    return result


def summary(result: dict) -> str:
    """One line per configuration: median seconds, and the median run's stages and memory."""
    keys = ("replicas", "jobs", "burst_wall_s", "videos_per_min", "generation_sec_median", "by_replica",
            "all_replicas_warm_s", "first_done_after_launch_s",
            "load_s", "process_to_ready_s", "cold_start_s", "launch_to_first_video_s", "generator_load_s",
            "selfcheck_s", "http_lag_s", "prestarted_worker", "early_vae", "compile_error")
    parts = [f"{k}={result[k]}" for k in keys if k in result]
    if "timeline" in result:
        parts.append(f"timeline: {describe(result['timeline'])}")
    if "burst_wall_s" in result:
        return " ".join(parts)
    for name, res in ({"": result} if "runs" in result else result.get("variants", {})).items():
        run = sorted(res["runs"], key=lambda r: r["seconds"])[len(res["runs"]) // 2]
        parts.append(f"[{name}] median {median_s(res):.2f}s warmup {res['warmup']['seconds']}s "
                     f"peak {run.get('peak_gb')} stages {run.get('stages') or run.get('metrics')}")
    return " ".join(parts)


def median_s(result: dict) -> float:
    return statistics.median(r["seconds"] for r in result["runs"])


def report(out_dir: Path) -> str:
    load = {p.stem: json.loads(p.read_text()) for p in out_dir.glob("*.json") if p.stem in MODES}
    starts = cold_start_lines(out_dir)
    rows = ["| configuration | per video s (median) | text / denoise / VAE decode / MP4 encode / other s | peak GPU GB |",
            "|---|---|---|---|"]

    def add(name, result):
        run = sorted(result["runs"], key=lambda r: r["seconds"])[len(result["runs"]) // 2]
        peak = run.get("peak_gb") or (run.get("metrics") or {}).get("peak_vram_gb")
        split = stage_split(run)
        cells = " / ".join(f"{split[k]:.2f}" for k in ("text encoding", "denoising (3 steps)", "VAE decode",
                                                        "MP4 encode")) + f" / {split['other (transfer, frames, HTTP)'] + split['storage']:.2f}"
        rows.append(f"| {name} | {median_s(result):.2f} | {cells} | {peak} |")

    if "bare" in load:
        add("bare FastVideo (mp), no offload, fp32 text encoder + VAE: **baseline**", load["bare"])
    if "bare-same" in load:
        add("bare FastVideo (mp) at this service's settings", load["bare-same"])
    for name, result in load.get("variants", {}).get("variants", {}).items():
        add(f"service backend (Ray executor), {name}", result)
    if "uncapped" in load:
        add("service backend, speed profile, no cap (cap32's baseline)", load["uncapped"])
    if "cap32" in load:
        add("service backend, 32 GB profile under a 32 GB cap", load["cap32"])
    if "cap32" in load and "uncapped" in load:
        rows.append(f"| 32 GB cap / no cap | {median_s(load['cap32']) / median_s(load['uncapped']):.3f}x | | |")
    if "service" in load:
        add("**service end to end** (HTTP submit -> MP4 stored)", load["service"])
    if "bare-sp2" in load:
        add("bare FastVideo (mp), our settings, one video over two GPUs (sp_size 2)", load["bare-sp2"])
    if "sp2" in load:
        add("**service, one replica over two GPUs** (gpus_per_replica: 2)", load["sp2"])
    if "sp2-wide" in load:
        add("service over two GPUs, the decode's one wide halo (FASTWAN_SPLIT_DECODE=wide)", load["sp2-wide"])
    if "sp2-eager-attention" in load:
        add("service over two GPUs, DiT attention and all-to-all outside the compiled blocks",
            load["sp2-eager-attention"])
    for mode, name in (("service-2", "service again (restart with the compile cache)"),
                       ("before", "service as before issue 17 (torch's attention order, VAE blocks not compiled)"), ("fp8", "service, fast profile without a light "
                       "decoder (FP8 DiT)"), ("fast", "**service, fast profile** (FP8 DiT + light decoder)"),
                       ("no-channels-last", "service, VAE convs not channels-last (the bench before run 34)"),
                       ("eager-attention", "service, DiT attention outside the compiled blocks (before run 36)"),
                       ("eager-noise", "service, initial noise drawn in the latent stage (before run 39)"),
                       ("vae-add-apart", "service, VAE interleave and shortcut add apart (before run 48)")):
        stem = json.loads(p.read_text()) if (p := out_dir / f"{mode}.json").exists() else None
        if stem and stem.get("runs"):
            add(name, stem)
    if "compare" in load:
        rows += ["", "| seed-1 frames against `service` | PSNR dB | max diff | mean diff (0-255) |", "|---|---|---|---|"]
        rows += [f"| {n} | {c['psnr_db']} | {c['max_diff']} | {c['mean_diff']} |" for n, c in load["compare"].items()]
    if "scale1" in load and "scale2" in load:
        one, two = load["scale1"], load["scale2"]
        rows += ["", "| generator replicas (one GPU each) | 8 jobs at once: wall s | videos / min | generation s per "
                     "video (median) | jobs per replica |", "|---|---|---|---|---|"]
        rows += [f"| {r['replicas']} | {r['burst_wall_s']} | {r['videos_per_min']} | {r['generation_sec_median']:.2f} "
                 f"| {r['by_replica']} |" for r in (one, two)]
        rows.append(f"| 2 / 1 | throughput x{two['videos_per_min'] / one['videos_per_min']:.2f} | | per video "
                    f"x{two['generation_sec_median'] / one['generation_sec_median']:.3f} | |")
    text = "\n".join(rows + starts)
    (out_dir / "gpu_bench.md").write_text(text + "\n")
    plot_stages(load, out_dir / "stages.png")
    return text


def cold_start_lines(out_dir: Path) -> list[str]:
    """Cold start against the bare load, in the order they ran (bare-load and cold modes)."""
    def runs(mode: str, key: str) -> list[float]:
        files = [p for p in out_dir.glob(f"{mode}*.json") if re.fullmatch(rf"{re.escape(mode)}(-\d+)?", p.stem)]
        order = sorted(files, key=lambda p: int(p.stem.removeprefix(mode).strip("-") or 1))
        return [json.loads(p.read_text())[key] for p in order]

    bare, cold = runs("bare-load", "process_to_ready_s"), runs("cold", "cold_start_s")
    if not bare or not cold:
        return []
    gap = statistics.median(cold) - statistics.median(bare)
    return ["", f"cold start (launch -> /ready 200): {cold} s; bare FastVideo process start -> loaded: {bare} s; "
                f"median gap {gap:.1f} s (goal <= 15)"]


def stage_split(run: dict) -> dict[str, float]:
    """Seconds per part of one video: text encoding, denoising, VAE decode, MP4 encode, storage, the rest."""
    metrics = run.get("metrics") or {}
    stages = run.get("stages") or metrics.get("stages") or {}
    parts = {
        "text encoding": sum(v for k, v in stages.items() if k.startswith("prompt_encoding")),
        "denoising (3 steps)": sum(v for k, v in stages.items() if k.startswith("denoising")),
        "VAE decode": sum(v for k, v in stages.items() if k.startswith("decoding")),
        "MP4 encode": metrics.get("encode_sec") or 0.0,
        "storage": metrics.get("store_sec") or 0.0,
    }
    parts["other (transfer, frames, HTTP)"] = max(0.0, run["seconds"] - sum(parts.values()))
    return parts


def plot_stages(load: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    bars = []
    if "bare" in load:
        bars.append(("bare FastVideo\n(baseline)", load["bare"]))
    if "bare-same" in load:
        bars.append(("bare FastVideo\nour settings", load["bare-same"]))
    if "before" in load:
        bars.append(("service before\nissue 17", load["before"]))
    if "eager-attention" in load:
        bars.append(("service, DiT attention\noutside its graphs", load["eager-attention"]))
    if "eager-noise" in load:
        bars.append(("service, noise drawn\nin the latent stage", load["eager-noise"]))
    if "vae-add-apart" in load:
        bars.append(("service, VAE shortcut\nadded apart", load["vae-add-apart"]))
    if "service" in load:
        bars.append(("service\nend to end", load["service"]))
    for mode, label in (("fp8", "fast profile,\nFP8 DiT only"), ("fast", "fast profile,\n+ light decoder"),
                        ("sp2-wide", "two GPUs,\none wide halo"),
                        ("sp2-eager-attention", "two GPUs, attention\noutside its graphs"),
                        ("sp2", "two GPUs\n(gpus_per_replica: 2)")):
        if mode in load:
            bars.append((label, load[mode]))
    if "cap32" in load:
        bars.append(("service backend\n32 GB cap", load["cap32"]))
    if not bars:
        return
    splits = [stage_split(sorted(r["runs"], key=lambda x: x["seconds"])[len(r["runs"]) // 2]) for _, r in bars]
    fig, ax = plt.subplots(figsize=(8, 5))
    left = [0.0] * len(bars)
    for part in splits[0]:
        values = [s[part] for s in splits]
        ax.barh([b[0] for b in bars], values, left=left, label=part)
        left = [a + b for a, b in zip(left, values)]
    for i, (total, (_, result)) in enumerate(zip(left, bars)):
        ax.text(total + 0.1, i, f"{median_s(result):.1f} s (median)", va="center", fontsize=8)
    gpu = next(iter(load.values())).get("gpu", "GPU")
    ax.set_xlabel(f"seconds per 1280x704x121 video: {gpu}, random-weight full-size model")
    ax.set_xlim(0, max(left) * 1.3)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


MODES = {"bare": lambda a: run_bare(a, False), "bare-same": lambda a: run_bare(a, True),
         "variants": run_variants, "cap32": run_cap32, "service": run_service,
         "uncapped": lambda a: run_cap32(a, capped=False),
         "bare-load": lambda a: run_bare(a, True, load_only=True), "cold": lambda a: run_service(a, cold_only=True),
         "scale1": lambda a: run_service(a, replicas=1), "scale2": lambda a: run_service(a, replicas=2),
         "load": lambda a: run_load(a, None), "load-omp": lambda a: run_load(a, str(os.cpu_count())),
         "before": lambda a: run_service(a, overrides={"attention_kernel": "torch-default", "vae_compile": False}),
         "autotune": lambda a: run_service(a, overrides={"cudnn_benchmark": True}),
         "no-autotune": lambda a: run_service(a, overrides={"cudnn_benchmark": False}),
         "vae-all": lambda a: run_service(a, overrides={"vae_compile_blocks": "all"}),
         "vae-upblocks": lambda a: run_service(a, overrides={"vae_compile_blocks": "up-blocks"}),
         "no-channels-last": lambda a: run_service(a, overrides={"vae_channels_last": False}),
         "eager-attention": lambda a: run_service(a, extra_env={"FASTVIDEO_DISABLE_ATTENTION_COMPILE": "1"}),
         "eager-noise": lambda a: run_service(a, extra_env={"FASTWAN_NOISE_PREFETCH": "0"}),
         "vae-add-apart": lambda a: run_service(a, extra_env={"FASTWAN_VAE_FUSED_SHORTCUT": "0"}),
         "fp8": lambda a: run_service(a, overrides={"speed_profile": "fast"}),
         "bare-sp2": lambda a: run_bare(a, True, gpus=2),
         "sp2": lambda a: run_service(a, overrides={"gpus_per_replica": 2}, extra_env=NCCL_REPORT),
         "sp2-wide": lambda a: run_service(a, overrides={"gpus_per_replica": 2},
                                           extra_env={**NCCL_REPORT, "FASTWAN_SPLIT_DECODE": "wide"}),
         "sp2-eager-attention": lambda a: run_service(a, overrides={"gpus_per_replica": 2}, extra_env={
             **NCCL_REPORT, "FASTVIDEO_DISABLE_ATTENTION_COMPILE": "1"}),
         "fast": lambda a: run_service(a, overrides={"speed_profile": "fast", "light_decoder_path": a.light_decoder}),
         "compare": lambda a: compare_frames(Path(a.out))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="+", choices=[*MODES, "report"])
    parser.add_argument("--model-dir", default="/tmp/full/FastWan2.2-TI2V-5B-Diffusers")
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    parser.add_argument("--n", type=int, default=2, help="timed videos per configuration (after a warm-up)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the DiT in cap32/service")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="channels-last VAE convs in bare-same/cap32/service (the shipped default; before run 34 "
                             "the bench left them off unless asked)")
    parser.add_argument("--after-warmup", action="store_true", help="service: time videos after the warm-up ends")
    parser.add_argument("--i2v", type=int, default=2, help="service: image-to-video requests after the text ones")
    parser.add_argument("--attention", default="auto", help="bare-same: SDPA kernel order (auto, torch-default, ...)")
    parser.add_argument("--burst", type=int, default=0, help="scale1/scale2: jobs sent at once after the warm-up")
    parser.add_argument("--compile-cache", help="service: torch.compile cache folder (kept between the runs)")
    parser.add_argument("--light-decoder", default="/tmp/light-decoder.pth", help="fast: the light decoder file")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.one:
        (out / f"{args.name or args.modes[0]}.json").write_text(json.dumps(MODES[args.modes[0]](args), indent=2))
        sys.stdout.flush()
        os._exit(0)  # skip FastVideo's executor destructors, which try to restart Ray at interpreter exit
    for index, mode in enumerate(args.modes):
        if mode == "report":
            print(report(out))
            continue
        repeat = args.modes[:index].count(mode)
        name = f"{mode}-{repeat + 1}" if repeat else mode
        t = time.perf_counter()
        cmd = [sys.executable, __file__, mode, "--one", "--name", name, "--model-dir", args.model_dir,
               "--out", str(out), "--n", str(args.n)] + (["--compile"] if args.compile else []) \
            + (["--channels-last"] if args.channels_last else ["--no-channels-last"]) + (["--after-warmup"] if args.after_warmup else []) \
            + ["--i2v", str(args.i2v), "--attention", args.attention, "--burst", str(args.burst)] + (["--compile-cache", args.compile_cache] if args.compile_cache else []) \
            + ["--light-decoder", args.light_decoder]
        with open(out / f"{name}.log", "wb") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=600).returncode
        print(f"== {name}: rc={rc} in {time.perf_counter() - t:.0f} s", flush=True)
        if (out / f"{name}.json").exists():
            print(summary(json.loads((out / f"{name}.json").read_text())), flush=True)
        else:
            print((out / f"{name}.log").read_text()[-2500:], flush=True)


if __name__ == "__main__":
    main()
