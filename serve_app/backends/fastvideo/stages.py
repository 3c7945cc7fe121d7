"""The stages patch: where this backend swaps stages of FastVideo's FastWan2.2 pipeline, inside the worker.

Three stages change, nothing in site-packages does: the latent stage takes the initial noise drawn while the
text encoder ran (noise.py), the DMD denoising stage gains Wan2.2 TI2V first-frame conditioning (ti2v.py),
and the decoding stage can stream into an MP4 encoder (streaming.py). FastVideo
keeps its stages in a list, a name -> stage dict and an attribute each; `replace_stage` keeps all three
in step. compat.py names the FastVideo versions this was written against.
Imports fastvideo: it runs in the GPU worker.
"""

from __future__ import annotations

from fastvideo.pipelines.stages.denoising import DmdDenoisingStage

from serve_app.backends.fastvideo.noise import install_noise_draw, prefetching_latent_stage
from serve_app.backends.fastvideo.streaming import StreamingDecodingStage
from serve_app.backends.fastvideo.ti2v import Ti2vDmdDenoisingStage


def stage_names(pipeline) -> list[str]:
    return list(getattr(pipeline, "_stage_name_mapping", {}).keys())


def get_stage(pipeline, name: str):
    return pipeline._stage_name_mapping[name]


def find_stage(pipeline, name: str):
    """The stage `name`, or None before FastVideo has created its stages."""
    return getattr(pipeline, "_stage_name_mapping", {}).get(name)


def replace_stage(pipeline, name: str, new) -> None:
    """Put `new` where the pipeline's stage `name` is (matched by identity)."""
    old = pipeline._stage_name_mapping[name]
    new._pipeline_stage_name = name
    pipeline._stages[next(i for i, stage in enumerate(pipeline._stages) if stage is old)] = new
    pipeline._stage_name_mapping[name] = new
    setattr(pipeline, name, new)


def install_serving_stages(pipeline) -> dict:
    """Swap in the noise prefetch, the TI2V denoising stage and the streaming decode (each inert unless a
    request uses it)."""
    pipeline.post_init()  # FastVideo creates the stages lazily, at the first forward; create them now
    done = {}
    latent = get_stage(pipeline, "latent_preparation_stage")
    if hasattr(latent, "noise_dtype"):
        done["latent_preparation_stage"] = "already installed"
    else:
        replace_stage(pipeline, "latent_preparation_stage", prefetching_latent_stage(latent))
        done["latent_preparation_stage"] = f"initial noise: {install_noise_draw()}"
    denoise = get_stage(pipeline, "denoising_stage")
    if isinstance(denoise, Ti2vDmdDenoisingStage):
        done["denoising_stage"] = "already installed"
    elif not isinstance(denoise, DmdDenoisingStage):
        raise RuntimeError(f"expected FastWan2.2's DMD denoising stage, found {type(denoise).__name__}")
    else:
        replace_stage(pipeline, "denoising_stage", Ti2vDmdDenoisingStage(
            pipeline.get_module("transformer"), denoise.scheduler, pipeline.get_module("vae")))
        done["denoising_stage"] = "ti2v"
    decode = get_stage(pipeline, "decoding_stage")
    if isinstance(decode, StreamingDecodingStage):
        done["decoding_stage"] = "already installed"
    else:
        replace_stage(pipeline, "decoding_stage",
                      StreamingDecodingStage(vae=pipeline.get_module("vae"), pipeline=pipeline))
        done["decoding_stage"] = "streaming"
    return done
