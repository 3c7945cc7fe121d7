"""Where job records, reference images and videos live: `file://DIR` or `s3://bucket/prefix`."""

from __future__ import annotations

from pathlib import Path

from serve_app.settings import StorageSettings
from serve_app.storage.base import Storage, StorageError

__all__ = ["Storage", "StorageError", "open_storage"]


def open_storage(settings: StorageSettings) -> Storage:
    url = settings.storage_url
    if url.startswith("file://"):
        from serve_app.storage.local import LocalStorage

        return LocalStorage(Path(url.removeprefix("file://")), url=url)
    if url.startswith("s3://"):
        from serve_app.storage.s3 import S3Storage

        secret = settings.s3_secret_access_key
        return S3Storage(url, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                         timeout_s=settings.s3_timeout_s, key_id=settings.s3_access_key_id and
                         settings.s3_access_key_id.get_secret_value(), secret=secret and secret.get_secret_value())
    raise ValueError(f"unsupported storage URL {url!r}: use file://DIR or s3://bucket/prefix")
