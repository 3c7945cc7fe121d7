"""Turn what a client asked for into a fully resolved `GenerationParams`, or an `InvalidInput` saying how to fix it.

Every entry point (the OpenAI API, the old /generate, the buffer worker) goes through `resolve()`, so the rules
are the same everywhere:
- the model makes multiples of 32 (the Wan2.2 VAE's 16x times the DiT's 2x2 patch); any other even size is
  made at the nearest such size (each side rounded: 720x1280 is made at 704x1280) and the MP4 is delivered
  at exactly the size asked (scaled to cover it, the centre kept);
- the model makes 4k+1 frames (the VAE packs 4 frames per latent after the first): another count is rounded
  to the nearest one, which the MP4 then has; `seconds` becomes frames = 4 * round(seconds * fps / 4) + 1;
- a missing seed becomes a random one, which the job then reports.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import threading

from serve_app.contracts import GenerationParams
from serve_app.settings import GenerationSettings, LimitsSettings

SIZE = re.compile(r"^\s*([0-9]{1,5})\s*[xX*]\s*([0-9]{1,5})\s*$")  # ASCII digits only
MULTIPLE = 32
MIN_FRAMES = 5  # one latent step past the first frame: anything shorter is a still image
IMAGE_SLOTS = threading.BoundedSemaphore(2)  # reference images decoded at once per process (memory bound)


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
    return int(match.group(1)), int(match.group(2))


def model_side(value: int) -> int:
    """The nearest side the model makes: a multiple of 32 (ties to the even multiple: 720 -> 704)."""
    return max(MULTIPLE, MULTIPLE * round(value / MULTIPLE))


def model_frames(value: int) -> int:
    """The nearest frame count the model makes: 4k+1 (120 -> 121, 10 -> 9)."""
    return 4 * round((value - 1) / 4) + 1


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
    frames = 4 * round(value * fps / 4) + 1
    if frames < MIN_FRAMES:
        raise InvalidInput(f"seconds must be at least {(MIN_FRAMES - 1) / fps:.2f} at {fps} fps "
                           f"({MIN_FRAMES} frames); got {seconds!r}", "seconds")
    return frames


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
        if value < MULTIPLE or value > limit:
            raise InvalidInput(f"{name} must be between {MULTIPLE} and {limit}; got {value}", "size")
        if value % 2:
            raise InvalidInput(f"{name} must be even (an H.264 MP4 has even sides); got {value}", "size")
    fps = fps if fps is not None else generation.default_fps
    if not 1 <= fps <= 60:
        raise InvalidInput(f"fps must be between 1 and 60; got {fps}", "fps")
    if num_frames is None:
        num_frames = frames_for_seconds(seconds, fps, limits) if seconds is not None else generation.default_num_frames
    requested_frames, num_frames = num_frames, model_frames(num_frames)
    if num_frames < MIN_FRAMES or num_frames > limits.max_num_frames:
        raise InvalidInput(f"num_frames must be at least {MIN_FRAMES} and at most {limits.max_num_frames} (the model "
                           f"makes 4k+1 frames, e.g. 81 or 121); got {requested_frames}", "num_frames")
    model_width, model_height = model_side(width), model_side(height)
    check_cost(limits, model_width, model_height, num_frames)
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
        prompt=prompt.strip(), negative_prompt=(negative_prompt or "").strip(), width=model_width,
        height=model_height, num_frames=num_frames, fps=fps, num_inference_steps=steps, guidance_scale=guidance_scale,
        seed=seed, output_width=width, output_height=height, requested_num_frames=requested_frames,
    )


def check_cost(limits: LimitsSettings, width: int, height: int, num_frames: int) -> None:
    """Refuse a video larger than the replica can hold (width x height x frames, `max_pixel_frames`)."""
    budget = limits.max_pixel_frames
    if budget is None or width * height * num_frames <= budget:
        return
    longest = (budget // (width * height) - 1) // 4 * 4 + 1
    hint = (f"at {width}x{height} at most {longest} frames" if longest >= MIN_FRAMES
            else "a smaller size")
    raise InvalidInput(
        f"a {width}x{height} video of {num_frames} frames is {width * height * num_frames / 1e6:.0f} M pixel-frames; "
        f"this service takes at most {budget / 1e6:.0f} M (e.g. 1280x704x121 is 109 M), so it would not fit in "
        f"the generator's memory: ask for {hint}, or raise max_pixel_frames where the hardware allows", "size")


async def with_reference_image(limits: LimitsSettings, params: GenerationParams, *, reference: str | None = None,
                                upload: bytes | None = None, param: str = "input_reference") -> GenerationParams:
    """Attach the reference image (URL, data URL or uploaded bytes), fitted to the video size."""
    from serve_app.media.fetch import FetchError, FetchPolicy
    from serve_app.media.images import ImageError, read_image_reference

    if upload is None and not reference:
        return params
    policy = FetchPolicy(max_bytes=limits.image_max_bytes, timeout_s=limits.image_fetch_timeout_s,
                         allow_private=limits.image_url_allow_private, allowed_hosts=limits.image_url_allowed_hosts)
    try:
        data = upload if upload is not None else await read_image_reference(reference, policy)
        if len(data) > limits.image_max_bytes:
            raise ImageError(f"image is larger than {limits.image_max_bytes} bytes (setting image_max_bytes)")
        png = await asyncio.to_thread(_prepare_one_at_a_time, data, params.width, params.height,
                                      limits.image_max_pixels)
    except (ImageError, FetchError) as exc:
        raise InvalidInput(str(exc), param) from None
    return params.model_copy(update={"image_png": png})


def _prepare_one_at_a_time(data: bytes, width: int, height: int, max_pixels: int) -> bytes:
    from serve_app.media.images import prepare_image

    with IMAGE_SLOTS:
        return prepare_image(data, width, height, max_pixels)


async def check_webhook_url(limits: LimitsSettings, url: str) -> None:
    """Refuse at submit time a webhook URL that delivery would refuse (scheme, private address)."""
    from serve_app.jobs.webhooks import webhook_policy
    from serve_app.media.fetch import FetchError, check_url

    try:
        await check_url(url, webhook_policy(limits))
    except FetchError as exc:
        raise InvalidInput(f"webhook_url: {exc}", "webhook_url") from None

