"""Build the Serve application from settings: Ingress.bind(Generator.bind(...)).

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
    """Ray options for the generator replica."""
    if settings.device != "cuda":
        return {"ray_actor_options": {"num_cpus": 1}}
    if settings.backend == "fastvideo" and settings.fastvideo_executor == "ray":
        # The replica holds no GPU itself: FastVideo's Ray worker takes the GPU from this bundle, so the
        # replica and its worker are placed together and nothing needs a shared-memory IPC namespace.
        return {
            "ray_actor_options": {"num_cpus": 1, "num_gpus": 0},
            "placement_group_bundles": [{"CPU": 1, "GPU": 1}],
            "placement_group_strategy": "STRICT_PACK",
        }
    return {"ray_actor_options": {"num_cpus": 1, "num_gpus": 1}}


def build_app(args: dict | None = None) -> Application:
    from serve_app.deployments.generator import Generator
    from serve_app.deployments.ingress import Ingress

    settings = Settings(**(args or {})).resolve(gpus=cluster_gpus())
    logger.info("FastWan Serve settings: backend=%s model=%s device=%s storage=%s", settings.backend,
                settings.model, settings.device, settings.storage_url)
    generator = Generator.options(**generator_options(settings)).bind(settings)
    return Ingress.options(ray_actor_options={"num_cpus": 0.5}).bind(generator, settings)
