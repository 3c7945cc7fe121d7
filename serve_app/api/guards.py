"""ASGI guards in front of every route: the optional API key and the request-size cap.

Keys are compared in constant time against every configured key (no early exit), and arrive as
`Authorization: Bearer <key>` or Salad's `Salad-Api-Key: <key>`. Health, readiness, the API
description and the playground page stay open (probes and browsers get them without a key); the
page's own API calls carry the key its user types.
"""

import hmac
import json

OPEN_PATHS = {"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/",
              "/playground"}
OPEN_PREFIXES = ("/playground-assets/",)


def _error(status: int, message: str, kind: str, extra_headers: list | None = None):
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return body, headers + (extra_headers or [])


async def _send_error(send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyGuard:
    def __init__(self, app, keys: list[str]):
        self.app = app
        self.keys = [k.encode() for k in keys]

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not self.keys or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        offered = headers.get(b"salad-api-key", b"")
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            offered = auth[7:].strip()
        ok = False
        for key in self.keys:  # compare with all of them: timing says nothing about which one matched
            ok |= hmac.compare_digest(offered, key)
        if ok:
            return await self.app(scope, receive, send)
        body, hdrs = _error(401, "missing or wrong API key: send `Authorization: Bearer <key>` or "
                                 "`Salad-Api-Key: <key>`", "authentication_error",
                            [(b"www-authenticate", b'Bearer realm="fastwan-serve"')])
        await _send_error(send, 401, body, hdrs)


class BodySizeGuard:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        message = f"request body is larger than {self.max_bytes} bytes"
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body, hdrs = _error(413, message, "invalid_request_error")
            return await _send_error(send, 413, body, hdrs)
        seen, started, refused = 0, False, False

        async def guarded_send(event):
            nonlocal started
            if refused:
                return  # the 413 has been sent; whatever the app says after that is dropped
            started = started or event["type"] == "http.response.start"
            await send(event)

        async def counting_receive():
            nonlocal seen, refused
            event = await receive()
            if event["type"] == "http.request" and not refused:
                seen += len(event.get("body", b""))
                if seen > self.max_bytes and not started:
                    refused = True
                    body, hdrs = _error(413, message, "invalid_request_error")
                    await _send_error(send, 413, body, hdrs)
                    return {"type": "http.disconnect"}
            return event

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise


