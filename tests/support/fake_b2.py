"""Backblaze B2 as the old worker's clients meet it, on 127.0.0.1: `b2_authorize_account` (B2's native API, which
says where the account's S3 endpoint and download host are) and the public download host
(`/file/{bucket}/{name}`). The S3 endpoint it names is the real S3 test server (moto); only these two B2-only
calls are stood in for."""

from __future__ import annotations

import base64

from fastapi import FastAPI, Header, HTTPException, Response

from devtools.procs import free_port
from tests.support.asgi_server import ThreadedServer


class FakeB2:
    def __init__(self, s3_endpoint: str, s3_client, key_id: str, app_key: str):
        self.s3_endpoint, self.s3, self.key_id, self.app_key = s3_endpoint, s3_client, key_id, app_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.authorizations = 0
        app = FastAPI()

        @app.get("/b2api/v3/b2_authorize_account")
        def authorize(authorization: str = Header("")):
            expected = "Basic " + base64.b64encode(f"{self.key_id}:{self.app_key}".encode()).decode()
            if authorization != expected:
                raise HTTPException(401, "bad_auth_token")
            self.authorizations += 1
            return {"accountId": "acc", "apiInfo": {"storageApi": {"s3ApiUrl": self.s3_endpoint,
                                                                  "downloadUrl": self.url}}}

        @app.get("/file/{bucket}/{name:path}")
        def download(bucket: str, name: str):  # a public bucket: no key needed
            try:
                body = self.s3.get_object(Bucket=bucket, Key=name)["Body"].read()
            except self.s3.exceptions.NoSuchKey:
                raise HTTPException(404, "not found") from None
            return Response(body, media_type="video/mp4")

        self.app = app

    def __enter__(self) -> "FakeB2":
        self.server = ThreadedServer(self.app, self.port).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
