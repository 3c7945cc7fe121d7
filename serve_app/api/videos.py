"""OpenAI Videos API: create (JSON or multipart), retrieve, download, list, delete."""

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from serve_app import inputs
from serve_app.api.deps import get_service, get_settings
from serve_app.api.errors import ApiError, ErrorResponse, describe_validation, invalid
from serve_app.api.schemas import ImageReference, VideoCreateRequest, VideoDeleted, VideoList, VideoObject
from serve_app.jobs.errors import JobConflict, JobNotFound
from serve_app.jobs.store import fingerprint

router = APIRouter(prefix="/v1/videos", tags=["videos"])

ERRORS = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}}

_SCHEMA = VideoCreateRequest.model_json_schema()
CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _SCHEMA},
            "multipart/form-data": {"schema": {
                **_SCHEMA,
                "properties": {
                    **_SCHEMA["properties"],
                    "input_reference": {"type": "string", "format": "binary",
                                        "description": "reference image file (or a URL / data URL as text)"},
                },
            }},
        },
    }
}


def prefer_wait(request: Request) -> float | None:
    """`Prefer: wait=N` (RFC 7240): hold the response up to N seconds (capped) for the job to finish."""
    for part in request.headers.get("prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return max(0.0, min(float(value.strip().strip('"')), get_settings(request).max_wait_s))
            except ValueError:
                raise invalid(f"Prefer: wait={value} is not a number of seconds", "Prefer") from None
    return None


async def read_create_request(request: Request) -> tuple[VideoCreateRequest, bytes | None]:
    """Parse JSON or multipart into the request model and, for multipart, the uploaded image bytes."""
    settings = get_settings(request)
    content_type = request.headers.get("content-type", "")
    upload: bytes | None = None
    try:
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            form = await request.form(max_files=1, max_fields=32, max_part_size=settings.image_max_bytes + 1)
            fields: dict = {}
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key != "input_reference":
                        raise invalid(f"unexpected file field {key!r}; send the image as input_reference", key)
                    upload = await value.read(settings.image_max_bytes + 1)
                elif "[" in key and key.endswith("]"):  # input_reference[image_url]=... (bracket form)
                    outer, inner = key[:-1].split("[", 1)
                    if not isinstance(fields.setdefault(outer, {}), dict):
                        raise invalid(f"field {outer!r} is given both as a value and as {key!r}; send one", outer)
                    fields[outer][inner] = value
                elif isinstance(fields.get(key), dict):
                    raise invalid(f"field {key!r} is given both as a value and as {key}[...]; send one", key)
                else:
                    fields[key] = value
            body = VideoCreateRequest.model_validate(fields)
        elif content_type.startswith("application/json") or not content_type:
            try:
                data = await request.json()
            except ValueError:
                raise invalid("request body is not valid JSON") from None
            except RecursionError:
                raise invalid("request body is nested too deeply to be a video request") from None
            if not isinstance(data, dict):
                raise invalid("request body must be a JSON object")
            body = VideoCreateRequest.model_validate(data)
        else:
            raise ApiError(415, f"unsupported content type {content_type!r}; send JSON or multipart/form-data")
    except ValidationError as exc:
        message, param = describe_validation(exc.errors())
        raise invalid(message, param) from None
    return body, upload


@router.post("", response_model=VideoObject, responses={**ERRORS, 429: {"model": ErrorResponse}},
             openapi_extra=CREATE_BODY,
             summary="Create a video job (returns at once; poll it or wait with GET). "
                     "`Idempotency-Key` makes retries safe.")
async def create_video(request: Request) -> VideoObject:
    settings, service = get_settings(request), get_service(request)
    service.check_capacity()
    body, upload = await read_create_request(request)
    if body.model and body.model.lower() != settings.served_model_name.lower():
        raise invalid(f"model {body.model!r} is not served here; use {settings.served_model_name!r} or omit it",
                      "model")
    width = height = None
    if body.size is not None:
        width, height = inputs.parse_size(body.size)
    params = inputs.resolve(
        settings.generation, settings.limits, prompt=body.prompt, seed=body.seed,
        negative_prompt=body.negative_prompt, width=width, height=height, num_frames=body.num_frames,
        seconds=body.seconds, fps=body.fps, steps=body.num_inference_steps, guidance_scale=body.guidance_scale,
    )
    reference = body.input_reference
    if isinstance(reference, ImageReference):
        if reference.file_id or not reference.image_url:
            raise invalid("input_reference.file_id is not supported; upload the image or give image_url",
                          "input_reference")
        reference = reference.image_url
    if body.webhook_url:
        await inputs.check_webhook_url(settings.limits, body.webhook_url)
    params = await inputs.with_reference_image(settings.limits, params, reference=reference, upload=upload)
    key = request.headers.get("idempotency-key")
    idempotency = None
    if key is not None:
        if not 1 <= len(key) <= 255:
            raise invalid("Idempotency-Key must be 1 to 255 characters", "Idempotency-Key")
        request_print = body.model_dump(exclude_none=True)
        request_print["upload"] = fingerprint({"image": upload.hex()}) if upload else None
        idempotency = ("videos", key, fingerprint(request_print))
    job, _ = await service.submit(params, api="videos", idempotency=idempotency, webhook_url=body.webhook_url)
    wait = prefer_wait(request)
    if wait:
        job = await service.wait(job.id, timeout_s=wait)
    return VideoObject.from_record(job)


@router.get("", response_model=VideoList, responses=ERRORS, summary="List video jobs, newest first")
async def list_videos(request: Request, limit: int = Query(20, ge=1, le=100), after: str | None = None,
                      order: Literal["asc", "desc"] = "desc") -> VideoList:
    try:
        jobs, has_more = await get_service(request).list(limit, after, ascending=order == "asc")
    except JobNotFound:
        raise invalid(f"after={after!r} is not a known video id", "after") from None
    data = [VideoObject.from_record(j) for j in jobs]
    return VideoList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
                     has_more=has_more)


@router.get("/{video_id}", response_model=VideoObject, responses=ERRORS,
            summary="Retrieve a video job (with `Prefer: wait=N`, once it finishes or after N s)")
async def retrieve_video(request: Request, video_id: str) -> VideoObject:
    job = await _job(request, video_id)
    wait = prefer_wait(request)
    if wait and not job.status.terminal:
        job = await get_service(request).wait(video_id, timeout_s=wait)
    return VideoObject.from_record(job)


@router.get("/{video_id}/content", responses={**ERRORS, 200: {"content": {"video/mp4": {}}}},
            summary="Download the MP4 (or a redirect to a presigned URL on S3)")
async def download_video(request: Request, video_id: str, variant: Literal["video"] = "video") -> Response:
    service = get_service(request)
    try:
        path, url = await service.open_video(video_id)
    except JobNotFound:
        raise ApiError(404, f"no video with id {video_id!r}", "video_id", "not_found") from None
    except JobConflict as exc:
        raise ApiError(409, f"{exc}; poll GET /v1/videos/{video_id} until status is completed",
                       "video_id", "not_ready") from None
    if path is not None:  # a private link to the file: a DELETE meanwhile cannot cut the download short
        return FileResponse(path, media_type="video/mp4", filename=f"{video_id}.mp4",
                            background=BackgroundTask(path.unlink, missing_ok=True))
    if get_settings(request).content_redirect:
        return RedirectResponse(url, status_code=302)
    try:
        return Response(await service.read_video(video_id), media_type="video/mp4")
    except JobNotFound:
        raise ApiError(404, f"no video with id {video_id!r}", "video_id", "not_found") from None


@router.post("/{video_id}/cancel", response_model=VideoObject, responses=ERRORS,
             summary="Cancel a queued video (one already on the GPU finishes: 409)")
async def cancel_video(request: Request, video_id: str) -> VideoObject:
    try:
        return VideoObject.from_record(await get_service(request).cancel(video_id))
    except JobConflict as exc:
        raise ApiError(409, str(exc), "video_id", "not_cancellable") from None


@router.delete("/{video_id}", response_model=VideoDeleted, responses=ERRORS,
               summary="Delete a video (a queued one is cancelled first; a running one: 409)")
async def delete_video(request: Request, video_id: str) -> VideoDeleted:
    service = get_service(request)
    try:
        await service.delete(video_id)
    except JobNotFound:
        raise ApiError(404, f"no video with id {video_id!r}", "video_id", "not_found") from None
    except JobConflict as exc:
        raise ApiError(409, str(exc), "video_id", "not_finished") from None
    return VideoDeleted(id=video_id)


async def _job(request: Request, video_id: str):
    try:
        return await get_service(request).get(video_id)
    except JobNotFound:
        raise ApiError(404, f"no video with id {video_id!r}", "video_id", "not_found") from None
