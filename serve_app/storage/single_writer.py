"""Create-if-absent for a storage that ignores conditional writes, correct while one process writes to it.

Idempotency keys and recovery leases need an atomic create-if-absent. S3's `If-None-Match: *` gives it (AWS
S3, R2, MinIO honour it); a store that ignores the header answers every such write with success. The job
store probes this at start (`JobStore.ensure_atomic_creates`); where the store fails the probe and the user
says only this one ingress replica writes to it (`storage_single_writer`), this lock stands in.
"""

from __future__ import annotations

import threading

from serve_app.storage.base import Storage


class SingleWriter(Storage):
    def __init__(self, base: Storage):
        self.base, self.url = base, base.url
        self.lock = threading.Lock()

    def put_if_absent(self, key, data, content_type):
        with self.lock:
            if self.base.exists(key):
                return False
            self.base.put_bytes(key, data, content_type)
            return True

    def put_bytes(self, key, data, content_type):
        return self.base.put_bytes(key, data, content_type)

    def put_file(self, key, path, content_type):
        return self.base.put_file(key, path, content_type)

    def get_bytes(self, key):
        return self.base.get_bytes(key)

    def exists(self, key):
        return self.base.exists(key)

    def delete(self, key):
        return self.base.delete(key)

    def list_keys(self, prefix):
        return self.base.list_keys(prefix)
