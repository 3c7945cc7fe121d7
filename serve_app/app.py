"""Build the Serve application from settings: Ingress.bind([Generator.bind(..., board), ...], board).

One Generator deployment a pool of replicas of one width (`replica_pools`; by default one pool).

`configs/serve.yaml` points here (`import_path: serve_app.app:build_app`). Deployment options that
depend on the hardware (GPU bundles, CPUs) are derived from the resolved settings in one place,
`generator_options`; anything set under `deployments:` in serve.yaml still wins over them.
"""

from __future__ import annotations

import logging

from ray.serve import Application

from serve_app.settings import Settings

logger = logging.getLogger("ray.serve")


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0


def generator_options(settings: Settings) -> dict:
    """Ray options for a generator replica: its device, any custom resources (which nodes may hold it), and
    a graceful stop long enough to finish the job it runs (scale-down, redeploys)."""
    extra = dict(settings.generator_resources)
    stop = {"graceful_shutdown_timeout_s": max(60.0, min(settings.job_timeout_s or 600.0, 900.0))}
    if settings.device != "cuda":
        return {"ray_actor_options": {"num_cpus": 1, **_resources(extra)}, **stop}
    gpus = settings.gpus_per_replica
    if settings.backend == "fastvideo" and settings.fastvideo_executor == "ray":
        # The replica holds no GPU itself: FastVideo's Ray workers take the GPUs from these bundles (one worker
        # a bundle, the first beside the replica), all on one node (STRICT_PACK: the DiT's split talks over
        # NVLink/PCIe), and nothing needs a shared-memory IPC namespace.
        return {
            "ray_actor_options": {"num_cpus": 1, "num_gpus": 0},
            "placement_group_bundles": [{"CPU": 1, "GPU": 1, **extra}] + [{"GPU": 1, **extra}] * (gpus - 1),
            "placement_group_strategy": "STRICT_PACK",
            **stop,
        }
    return {"ray_actor_options": {"num_cpus": 1, "num_gpus": gpus, **_resources(extra)}, **stop}


def check_replica_width(settings: Settings, node_gpus: list[float]) -> None:
    """A replica of several GPUs needs the FastVideo backend and a node with that many GPUs: say so at start,
    rather than leave the replica waiting for a placement that never comes."""
    gpus = settings.gpus_per_replica
    if gpus == 1:  # Settings.resolve makes it 1 on the CPU
        return
    if settings.backend != "fastvideo":
        raise ValueError(f"gpus_per_replica={gpus} needs the FastVideo backend (backend={settings.backend} makes "
                         "each video on one GPU): set gpus_per_replica: 1, or install FastVideo")
    if node_gpus and max(node_gpus) < gpus:
        raise ValueError(f"gpus_per_replica={gpus}, but the largest node of this Ray cluster has "
                         f"{max(node_gpus):g} GPUs (a replica's GPUs must sit on one node): lower gpus_per_replica "
                         "or give the node more GPUs (CUDA_VISIBLE_DEVICES)")


def node_gpus() -> list[float]:
    import ray

    if not ray.is_initialized():
        return []
    return [float(node["Resources"].get("GPU", 0)) for node in ray.nodes() if node.get("Alive")]


def _resources(extra: dict[str, float]) -> dict:
    return {"resources": extra} if extra else {}


def build_app(args: dict | None = None) -> Application:
    from serve_app.deployments.board import GeneratorBoard
    from serve_app.deployments.generator import Generator
    from serve_app.deployments.ingress import Ingress
    from serve_app.hardware import gpu_memory_gb, host_memory_gb

    from serve_app.modes import check_links_reach_clients
    from serve_app.storage.b2 import apply_b2

    gpus = cluster_gpus()
    settings = apply_b2(Settings(**(args or {}))).resolve(
        gpus=gpus, gpu_memory_gb=gpu_memory_gb() if gpus else None, host_memory_gb=host_memory_gb())
    check_links_reach_clients(settings)
    logger.info("FastWan Serve settings: backend=%s model=%s device=%s generator pools (GPUs a replica x "
                "replicas)=%s storage=%s", settings.backend, settings.model, settings.device,
                [(p.gpus_per_replica, p.num_replicas) for p in settings.pools()], settings.storage_url)
    board = GeneratorBoard.bind()
    generators = []
    for index, pool in enumerate(settings.pools()):  # one deployment a width: Generator, Generator-2, ...
        pool_settings = settings.model_copy(update={"gpus_per_replica": pool.gpus_per_replica})
        check_replica_width(pool_settings, node_gpus())
        options = generator_options(pool_settings)
        if settings.replica_pools:
            options.update(name=pool_deployment_name(index), num_replicas=pool.num_replicas)
        generators.append(Generator.options(**options).bind(pool_settings, board))
    return Ingress.options(ray_actor_options={"num_cpus": 0.5}).bind(generators, board, settings)


def pool_deployment_name(index: int) -> str:
    """The Serve deployment of the index-th generator pool (`deployments:` in serve.yaml refers to it)."""
    return "Generator" if index == 0 else f"Generator-{index + 1}"
