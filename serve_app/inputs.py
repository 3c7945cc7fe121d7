"""Turn what a client asked for into a fully resolved `GenerationParams`, or an `InvalidInput` saying how to fix it.

Every entry point (the OpenAI API, the old /generate, the buffer worker) goes through `resolve()`, so the rules
are the same everywhere:
- width and height are multiples of 32 (the Wan2.2 VAE's 16x times the DiT's 2x2 patch);
  OpenAI's "720x1280"/"1280x720" are read as FastWan's 704x1280/1280x704;
- frames are 4k+1 (the VAE packs 4 frames per latent after the first); `seconds` becomes
  frames = 4 * round(seconds * fps / 4) + 1;
- a missing seed becomes a random one, which the job then reports.
"""

from __future__ import annotations

import asyncio
import math
import random
import re

from serve_app.contracts import GenerationParams
from serve_app.settings import GenerationSettings, LimitsSettings

SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX*]\s*(\d{1,5})\s*$")
SIZE_ALIASES = {(720, 1280): (704, 1280), (1280, 720): (1280, 704)}
MULTIPLE = 32


class InvalidInput(ValueError):
    """The request cannot be served as given; `message` says why and how to fix it, `param` names the field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message, self.param = message, param


def random_seed() -> int:
    return random.SystemRandom().randrange(2**32)


def parse_size(size: str) -> tuple[int, int]:
    match = SIZE.match(size)
    if not match:
        raise InvalidInput(f"size must look like WIDTHxHEIGHT, e.g. 1280x704; got {size!r}", "size")
    width, height = int(match.group(1)), int(match.group(2))
    return SIZE_ALIASES.get((width, height), (width, height))


def frames_for_seconds(seconds: str | float, fps: int, limits: LimitsSettings) -> int:
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise InvalidInput(f"seconds must be a number such as 5; got {seconds!r}", "seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput("seconds must be greater than 0", "seconds")
    longest = (limits.max_num_frames - 1) / fps
    if value > longest:
        raise InvalidInput(f"seconds must be at most {longest:g} at {fps} fps", "seconds")
    return 4 * round(value * fps / 4) + 1


def resolve(
    generation: GenerationSettings,
    limits: LimitsSettings,
    *,
    prompt: str,
    seed: int | None,
    negative_prompt: str | None = None,
    width: int | None = None,
    height: int | None = None,
    num_frames: int | None = None,
    seconds: str | float | None = None,
    fps: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
) -> GenerationParams:
    if not prompt or not prompt.strip():
        raise InvalidInput("prompt must not be empty", "prompt")
    if len(prompt) > limits.max_prompt_chars:
        raise InvalidInput(f"prompt is {len(prompt)} characters; the limit is {limits.max_prompt_chars}", "prompt")
    if negative_prompt and len(negative_prompt) > limits.max_prompt_chars:
        raise InvalidInput(f"negative_prompt is longer than {limits.max_prompt_chars} characters", "negative_prompt")
    width = width if width is not None else generation.default_width
    height = height if height is not None else generation.default_height
    for name, value, limit in (("width", width, limits.max_width), ("height", height, limits.max_height)):
        if value < MULTIPLE or value > limit or value % MULTIPLE:
            raise InvalidInput(f"{name} must be a multiple of {MULTIPLE} between {MULTIPLE} and {limit}; got {value}",
                               "size")
    fps = fps if fps is not None else generation.default_fps
    if not 1 <= fps <= 60:
        raise InvalidInput(f"fps must be between 1 and 60; got {fps}", "fps")
    if num_frames is None:
        num_frames = frames_for_seconds(seconds, fps, limits) if seconds is not None else generation.default_num_frames
    if num_frames < 1 or num_frames > limits.max_num_frames or (num_frames - 1) % 4:
        raise InvalidInput(f"num_frames must be 4k+1 (e.g. 81 or 121) and at most {limits.max_num_frames}; "
                           f"got {num_frames}", "num_frames")
    steps = steps if steps is not None else generation.default_steps
    if not 1 <= steps <= limits.max_steps:
        raise InvalidInput(f"num_inference_steps must be between 1 and {limits.max_steps}; got {steps}",
                           "num_inference_steps")
    guidance_scale = guidance_scale if guidance_scale is not None else generation.default_guidance_scale
    if not 0 <= guidance_scale <= 20:
        raise InvalidInput(f"guidance_scale must be between 0 and 20; got {guidance_scale}", "guidance_scale")
    if seed is None:
        seed = generation.default_seed if generation.default_seed is not None else random_seed()
    return GenerationParams(
        prompt=prompt.strip(), negative_prompt=(negative_prompt or "").strip(), width=width, height=height,
        num_frames=num_frames, fps=fps, num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed,
    )


async def with_reference_image(limits: LimitsSettings, params: GenerationParams, *, reference: str | None = None,
                                upload: bytes | None = None, param: str = "input_reference") -> GenerationParams:
    """Attach the reference image (URL, data URL or uploaded bytes), fitted to the video size."""
    from serve_app.media.fetch import FetchError, FetchPolicy
    from serve_app.media.images import ImageError, prepare_image, read_image_reference

    if upload is None and not reference:
        return params
    policy = FetchPolicy(max_bytes=limits.image_max_bytes, timeout_s=limits.image_fetch_timeout_s,
                         allow_private=limits.image_url_allow_private, allowed_hosts=limits.image_url_allowed_hosts)
    try:
        data = upload if upload is not None else await read_image_reference(reference, policy)
        if len(data) > limits.image_max_bytes:
            raise ImageError(f"image is larger than {limits.image_max_bytes} bytes")
        png = await asyncio.to_thread(prepare_image, data, params.width, params.height, limits.image_max_pixels)
    except (ImageError, FetchError) as exc:
        raise InvalidInput(str(exc), param) from None
    return params.model_copy(update={"image_png": png})


async def check_webhook_url(limits: LimitsSettings, url: str) -> None:
    """Refuse at submit time a webhook URL that delivery would refuse (scheme, private address)."""
    from serve_app.jobs.webhooks import webhook_policy
    from serve_app.media.fetch import FetchError, check_url

    try:
        await check_url(url, webhook_policy(limits))
    except FetchError as exc:
        raise InvalidInput(f"webhook_url: {exc}", "webhook_url") from None

