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

    def local_path(self, key: str) -> Path | None:
        """A path on this machine holding the object, where the backend has one."""
        return None

    def staging_dir(self) -> Path:
        """Where to write files that will be `put_file`d, so local stores can rename instead of copy."""
        import tempfile

        return Path(tempfile.gettempdir())
