"""The playground: a static page at `/` and `/playground` that drives the public OpenAI Videos API.

Plain HTML, CSS and JS from this folder (no build step, no external requests). The page itself is open;
the API calls it makes carry the key the user types, so auth is exactly the API's.
"""

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/playground-assets"
PAGE_PATHS = ("/", "/playground")
# Same origin only, but for media: a completed video may redirect to a presigned object-storage URL.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: https: http:; "
                               "connect-src 'self' https: http:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)
_folder = resources.files(__package__) / "static"


@router.get("/", response_class=HTMLResponse)
@router.get("/playground", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    return HTMLResponse(_folder.joinpath("index.html").read_text(encoding="utf-8"), headers=SECURITY_HEADERS)


def assets() -> StaticFiles:
    """The page's CSS and JS (static/), mounted at ASSETS_PATH."""
    return StaticFiles(directory=str(_folder), check_dir=True)
