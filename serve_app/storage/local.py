"""Local folder storage (the default): write to a hidden temp file, fsync, then rename into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from serve_app.storage.base import Storage, StorageError

STAGING = ".staging"


class LocalStorage(Storage):
    def __init__(self, root: Path, url: str | None = None):
        self.root = Path(root).resolve()
        self.url = url or f"file://{self.root}"
        try:
            (self.root / STAGING).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create storage folder {self.root}: {exc}") from exc

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents or key.startswith(STAGING):
            raise ValueError(f"storage key {key!r} escapes the storage folder")
        return path

    def staging_dir(self) -> Path:
        return self.root / STAGING

    @contextlib.contextmanager
    def _staged(self, key: str, data: bytes):
        """A synced temp file in the staging folder holding `data` (removed afterwards if still there)."""
        fd, tmp = tempfile.mkstemp(dir=self.staging_dir())
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            yield Path(tmp)
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        with self._staged(key, data) as tmp:
            self._publish(tmp, key)

    def put_if_absent(self, key: str, data: bytes, content_type: str) -> bool:
        with self._staged(key, data) as tmp:
            target = self._path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o644)
            try:
                os.link(tmp, target)  # fails if the name exists: atomic create-if-absent
            except FileExistsError:
                return False
            return True

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        path = Path(path)
        if path.parent.resolve() != self.staging_dir():
            fd, tmp = tempfile.mkstemp(dir=self.staging_dir())
            os.close(fd)
            shutil.copyfile(path, tmp)
            path = Path(tmp)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        try:
            self._publish(path, key)
        finally:
            path.unlink(missing_ok=True)

    def _publish(self, tmp: Path, key: str) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list_keys(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix.strip("/") else self.root
        folder = base if prefix.endswith("/") or base.is_dir() else base.parent
        if not folder.is_dir():
            return []
        keys = []
        for path in folder.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not key.startswith(STAGING):
                keys.append(key)
        return sorted(keys)

    def pinned_path(self, key: str) -> Path | None:
        """A hard link in the staging folder: the same bytes, kept alive by the link whatever DELETE does."""
        pinned = self.staging_dir() / f"read-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            os.link(self._path(key), pinned)
        except FileNotFoundError:
            return None
        return pinned
