import httpx
import pytest

from serve_app.settings import StorageSettings
from serve_app.storage import open_storage as open_settings
from serve_app.storage.local import LocalStorage
from tests.conftest import BUCKET


def open_storage(url, **kw):
    return open_settings(StorageSettings(storage_url=url, **kw))


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return open_storage(f"file://{tmp_path}/store")
    s3 = request.getfixturevalue("s3_server")
    return open_storage(f"s3://{BUCKET}/unit-{tmp_path.name}", s3_endpoint_url=s3.endpoint, s3_region="us-east-1")


def test_round_trip_list_and_delete(storage, tmp_path):
    storage.put_bytes("jobs/a.json", b'{"a": 1}', "application/json")
    src = tmp_path / "v.mp4"
    src.write_bytes(b"video-bytes" * 1000)
    storage.put_file("videos/a.mp4", src, "video/mp4")
    assert storage.get_bytes("jobs/a.json") == b'{"a": 1}'
    assert storage.get_bytes("videos/a.mp4") == b"video-bytes" * 1000
    assert storage.get_bytes("jobs/missing.json") is None
    assert storage.exists("videos/a.mp4") and not storage.exists("videos/b.mp4")
    assert storage.list_keys("jobs/") == ["jobs/a.json"]
    assert storage.list_keys("videos/") == ["videos/a.mp4"]
    storage.delete("videos/a.mp4")
    storage.delete("videos/a.mp4")  # deleting twice is fine
    assert not storage.exists("videos/a.mp4") and storage.list_keys("videos/") == []


def test_overwrite_replaces_whole_object(storage):
    storage.put_bytes("jobs/x.json", b"first version, long" * 100, "application/json")
    storage.put_bytes("jobs/x.json", b"second", "application/json")
    assert storage.get_bytes("jobs/x.json") == b"second"


def test_presigned_url_downloads_on_s3_only(storage):
    storage.put_bytes("videos/p.mp4", b"mp4data", "video/mp4")
    url = storage.presigned_url("videos/p.mp4", 600)
    if isinstance(storage, LocalStorage):
        pinned = storage.pinned_path("videos/p.mp4")
        storage.delete("videos/p.mp4")  # a download already under way keeps its bytes
        assert url is None and pinned.read_bytes() == b"mp4data" and storage.pinned_path("videos/p.mp4") is None
    else:
        resp = httpx.get(url)
        assert resp.status_code == 200 and resp.content == b"mp4data"
        assert "X-Amz-Expires=600" in url


def test_local_writes_go_through_staging_and_keys_cannot_escape(tmp_path):
    store = LocalStorage(tmp_path / "s")
    store.put_bytes("videos/a.mp4", b"x", "video/mp4")
    assert list(store.staging_dir().iterdir()) == []  # the temp file was renamed into place
    assert store.list_keys("") == ["videos/a.mp4"]  # staging is never listed
    for bad in ("../outside", "/etc/passwd", ".staging/x"):
        with pytest.raises(ValueError):
            store.put_bytes(bad, b"x", "text/plain")


def test_s3_prefix_isolates_keys(s3_server):
    a = open_storage(f"s3://{BUCKET}/tenant-a", s3_endpoint_url=s3_server.endpoint)
    b = open_storage(f"s3://{BUCKET}/tenant-b/", s3_endpoint_url=s3_server.endpoint)
    a.put_bytes("jobs/1.json", b"a", "application/json")
    assert b.list_keys("jobs/") == [] and b.get_bytes("jobs/1.json") is None
    assert s3_server.client().get_object(Bucket=BUCKET, Key="tenant-a/jobs/1.json")["Body"].read() == b"a"


def test_put_if_absent_creates_once(storage):
    assert storage.put_if_absent("leases/a/1", b"first", "text/plain") is True
    assert storage.put_if_absent("leases/a/1", b"second", "text/plain") is False
    assert storage.get_bytes("leases/a/1") == b"first"


class IgnoresConditions(LocalStorage):
    """A store like some S3 clones: If-None-Match is ignored, so every conditional create 'succeeds'."""

    def put_if_absent(self, key, data, content_type):
        self.put_bytes(key, data, content_type)
        return True


def test_the_store_probes_conditional_writes_at_start(tmp_path):
    import asyncio

    from serve_app.jobs.store import IdempotencyEntry, JobStore

    assert JobStore(LocalStorage(tmp_path / "honest")).ensure_atomic_creates() == "atomic"
    sloppy = JobStore(IgnoresConditions(tmp_path / "sloppy"))
    with pytest.raises(RuntimeError, match="does not honour conditional writes.*storage_single_writer"):
        sloppy.ensure_atomic_creates()
    assert sloppy.ensure_atomic_creates(single_writer=True) == "in-process"
    entry = IdempotencyEntry(job_id="video_a", fingerprint="f")
    first = asyncio.run(sloppy.remember("videos", "k", entry))
    second = asyncio.run(sloppy.remember("videos", "k", IdempotencyEntry(job_id="video_b", fingerprint="g")))
    assert first is None and second.job_id == "video_a"  # the key still binds one job
