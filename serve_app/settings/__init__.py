"""Every setting, in sections: each layer takes the section it needs (`settings.storage`, `settings.limits`, ...).

Users see one flat set of names: the `args:` block of `configs/serve.yaml` and environment variables
`FASTWAN_<NAME>`; the environment wins, so one image with one serve.yaml is configured per deploy (Salad,
Vast.ai) without editing files. `Settings` is the union of the sections below; `resolve()` turns "auto"
values into concrete ones once, in `build_app`, where the cluster's GPUs are known, and replicas receive
the resolved copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from serve_app.settings.budget import pixel_frame_budget
from serve_app.settings.sections import (
    TINY_MODEL,
    BatchingSettings,
    FastVideoSettings,
    GenerationSettings,
    HttpSettings,
    LegacySettings,
    LimitsSettings,
    ModelSettings,
    ReliabilitySettings,
    StorageSettings,
)
from serve_app.models.layout import HF_MODEL_ID

Section = TypeVar("Section", bound=BaseModel)
SECTIONS: tuple[type[BaseModel], ...] = (ModelSettings, FastVideoSettings, GenerationSettings, LimitsSettings,
                                         HttpSettings, StorageSettings, ReliabilitySettings, LegacySettings,
                                         BatchingSettings)

__all__ = ["SECTIONS", "TINY_MODEL", "BatchingSettings", "FastVideoSettings", "GenerationSettings", "HttpSettings",
           "LegacySettings", "LimitsSettings", "ModelSettings", "ReliabilitySettings", "Settings", "StorageSettings"]


class Settings(BaseSettings, *reversed(SECTIONS)):
    """All sections in one flat model: what serve.yaml `args:` and `FASTWAN_*` variables set."""

    model_config = SettingsConfigDict(env_prefix="FASTWAN_", extra="forbid", validate_default=True,
                                      protected_namespaces=())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings, dotenv_settings, file_secret_settings)

    def section(self, kind: type[Section]) -> Section:
        return kind.model_construct(**{name: getattr(self, name) for name in kind.model_fields})

    # one property per section, so a layer reads `settings.storage.storage_url`
    models = property(lambda self: self.section(ModelSettings))
    fastvideo = property(lambda self: self.section(FastVideoSettings))
    generation = property(lambda self: self.section(GenerationSettings))
    limits = property(lambda self: self.section(LimitsSettings))
    http = property(lambda self: self.section(HttpSettings))
    storage = property(lambda self: self.section(StorageSettings))
    reliability = property(lambda self: self.section(ReliabilitySettings))
    legacy = property(lambda self: self.section(LegacySettings))
    batching = property(lambda self: self.section(BatchingSettings))

    @property
    def uses_tiny_model(self) -> bool:
        return self.model == TINY_MODEL

    def resolve(self, gpus: float, gpu_memory_gb: float | None = None,
                host_memory_gb: float | None = None) -> "Settings":
        """Return a copy with every 'auto' and None default made concrete for a node with `gpus` GPUs."""
        update: dict = {}
        on_gpu = gpus >= 1 if self.device == "auto" else self.device == "cuda"
        update["device"] = "cuda" if on_gpu else "cpu"
        if self.backend == "auto":
            update["backend"] = "fastvideo" if on_gpu and _fastvideo_installed() else "diffusers"
        model = self.model
        if model == "auto":
            model = HF_MODEL_ID if on_gpu else TINY_MODEL
            update["model"] = model
        small = model == TINY_MODEL
        for name, tiny_value, real_value in (
            ("default_width", 256, 1280),
            ("default_height", 256, 704),
            ("default_num_frames", 17, 121),
            ("default_steps", 3, 3),
        ):
            if getattr(self, name) is None:
                update[name] = tiny_value if small else real_value
        if self.storage_url.startswith("file://") and not self.storage_url.startswith("file:///"):
            # relative to where the app is built (the `serve run` directory), not to each replica's own cwd
            update["storage_url"] = "file://" + str(Path(self.storage_url.removeprefix("file://")).resolve())
        if not self.compile_cache_dir.is_absolute():
            update["compile_cache_dir"] = self.compile_cache_dir.resolve()
        if self.max_pixel_frames is None:
            update["max_pixel_frames"] = pixel_frame_budget(on_gpu, gpu_memory_gb, host_memory_gb)
        if not on_gpu and self.gpus_per_replica > 1:  # the CPU fallback makes each video in one process
            update["gpus_per_replica"] = 1
        if not on_gpu and any(pool.gpus_per_replica > 1 for pool in self.replica_pools):
            update["replica_pools"] = [pool.model_copy(update={"gpus_per_replica": 1}) for pool in self.replica_pools]
        if self.job_timeout_s is None:
            update["job_timeout_s"] = 600.0 if on_gpu else 1800.0
        return self.model_copy(update=update)


def _fastvideo_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("fastvideo") is not None
