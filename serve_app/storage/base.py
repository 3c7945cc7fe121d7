"""The storage interface: job records, reference images and MP4s all live behind it.

Every write is all-or-nothing: a reader sees the old object, the new one, or none, never a part.
Methods are synchronous (boto3 is); callers run them in a thread.
"""

from __future__ import annotations

import abc
from pathlib import Path


class StorageError(RuntimeError):
    """The storage service failed (network, permissions); the operation may succeed if retried."""


class Storage(abc.ABC):
    url: str

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    @abc.abstractmethod
    def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at `path` under `key`; the file may be moved away."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes, content_type: str) -> bool:
        """Create the object only if no object has that key; True if this call created it (atomic)."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """The object, or None if it does not exist."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    @abc.abstractmethod
    def list_keys(self, prefix: str) -> list[str]: ...

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A time-limited URL anyone can GET, or None where the backend has none (local files)."""
        return None

    def pinned_path(self, key: str) -> Path | None:
        """Where the backend keeps files on this machine: a private path to the object that stays readable even
        if the object is deleted meanwhile (the caller unlinks it); None if missing or not a local backend."""
        return None

    def object_name(self, key: str) -> str:
        """The object's name in its bucket (keys are relative to the storage URL's prefix)."""
        return key

    def within(self, prefix: str) -> "Storage":
        """A view of this storage under `prefix` (keys of the view are relative to it)."""
        return Within(self, prefix) if prefix else self

    def staging_dir(self) -> Path:
        """Where to write files that will be `put_file`d, so local stores can rename instead of copy."""
        import tempfile

        return Path(tempfile.gettempdir())


class Within(Storage):
    """Another storage's keys under a prefix (the service's own objects beside the old worker's videos)."""

    def __init__(self, base: Storage, prefix: str):
        self.base, self.prefix = base, prefix.strip("/") + "/"
        self.url = f"{base.url.rstrip('/')}/{self.prefix}"

    def put_bytes(self, key, data, content_type):
        return self.base.put_bytes(self.prefix + key, data, content_type)

    def put_file(self, key, path, content_type):
        return self.base.put_file(self.prefix + key, path, content_type)

    def put_if_absent(self, key, data, content_type):
        return self.base.put_if_absent(self.prefix + key, data, content_type)

    def get_bytes(self, key):
        return self.base.get_bytes(self.prefix + key)

    def exists(self, key):
        return self.base.exists(self.prefix + key)

    def delete(self, key):
        return self.base.delete(self.prefix + key)

    def list_keys(self, prefix):
        return [k.removeprefix(self.prefix) for k in self.base.list_keys(self.prefix + prefix)]
