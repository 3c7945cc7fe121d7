"""One error shape for every 4xx/5xx, OpenAI style: {"error": {"message", "type", "param", "code"}}.

Validation errors become 400 with a sentence naming the field, not FastAPI's 422 list.
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def invalid(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_request")


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               409: "conflict_error", 413: "invalid_request_error", 415: "invalid_request_error",
               429: "rate_limit_error", 503: "service_unavailable"}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def describe_validation(errors: list) -> tuple[str, str | None]:
    """Pydantic errors -> one readable sentence and the first offending field."""
    parts, first = [], None
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        first = first or field
        msg = err.get("msg", "is invalid")
        if err.get("type") == "extra_forbidden":
            msg = "is not a known field"
        elif err.get("type") == "missing":
            msg = "is required"
        parts.append(f"{field}: {msg}")
    return "; ".join(parts), first


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError):
        message, param = describe_validation(exc.errors())
        return error_response(400, message, param, "invalid_request")

    @app.exception_handler(ValidationError)
    async def _validation(_: Request, exc: ValidationError):
        message, param = describe_validation(exc.errors())
        return error_response(400, message, param, "invalid_request")

    from serve_app.inputs import InvalidInput
    from serve_app.jobs.errors import IdempotencyConflict, JobNotFound, Saturated
    from serve_app.storage import StorageError

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput):
        return error_response(400, exc.message, exc.param, "invalid_request")

    @app.exception_handler(Saturated)
    async def _saturated(_: Request, exc: Saturated):
        return error_response(429, str(exc), code="saturated", headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(StorageError)
    async def _storage(_: Request, exc: StorageError):
        return error_response(503, f"storage is unavailable, nothing was accepted; retry: {exc}",
                              code="storage_unavailable", headers={"Retry-After": "10"})

    @app.exception_handler(IdempotencyConflict)
    async def _idempotency(_: Request, exc: IdempotencyConflict):
        return error_response(409, str(exc), param="Idempotency-Key", code="idempotency_conflict")

    @app.exception_handler(JobNotFound)
    async def _not_found(_: Request, exc: JobNotFound):
        return error_response(404, f"no video with id {exc}", "video_id", "not_found")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))
