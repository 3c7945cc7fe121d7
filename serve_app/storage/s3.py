"""S3-compatible storage through boto3 (AWS S3, Cloudflare R2, Backblaze B2, MinIO).

Credentials come from the standard AWS chain (env vars, profile, instance role). An S3 object
appears only once its upload completes, multipart included, which is the atomicity we need.
"""

from __future__ import annotations

from pathlib import Path

from serve_app.storage.base import Storage, StorageError


class S3Storage(Storage):
    def __init__(self, url: str, endpoint_url: str | None = None, region: str | None = None,
                 timeout_s: float = 10.0, key_id: str | None = None, secret: str | None = None):
        import boto3
        from botocore.config import Config

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError("storage_url must name a bucket: s3://bucket/prefix")
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        # Fail fast and let the job store retry with backoff: an outage shows up in seconds, not minutes.
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=min(5.0, timeout_s),
                        read_timeout=timeout_s, signature_version="s3v4")
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config,
                                   aws_access_key_id=key_id, aws_secret_access_key=secret)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def object_name(self, key: str) -> str:
        return self._key(key)

    def _call(self, what: str, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(what) from None
            if code in ("412", "PreconditionFailed", "409", "ConditionalRequestConflict"):
                raise FileExistsError(what) from None
            raise StorageError(f"S3 {what} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {what} failed: {exc}") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._call(f"put {key}", self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data,
                   ContentType=content_type)

    def put_if_absent(self, key: str, data: bytes, content_type: str) -> bool:
        """S3 conditional write (If-None-Match: *), which AWS, R2 and MinIO honour."""
        try:
            self._call(f"put-if-absent {key}", self.client.put_object, Bucket=self.bucket, Key=self._key(key),
                       Body=data, ContentType=content_type, IfNoneMatch="*")
            return True
        except FileExistsError:
            return False

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        self._call(f"upload {key}", self.client.upload_file, str(path), self.bucket, self._key(key),
                   ExtraArgs={"ContentType": content_type})

    def get_bytes(self, key: str) -> bytes | None:
        try:
            obj = self._call(f"get {key}", self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        except FileNotFoundError:
            return None
        return obj["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self._call(f"head {key}", self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def list_keys(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []

        def walk():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                keys.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))

        self._call(f"list {prefix}", walk)
        return sorted(keys)

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        return self._call(f"presign {key}", self.client.generate_presigned_url, "get_object",
                          Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s)
