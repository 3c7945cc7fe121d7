"""Load: 500 jobs from 32 concurrent clients through the real app. Every job completes, none is lost or
duplicated, every MP4 decodes, and nothing is left marked unfinished."""

import concurrent.futures as cf
import time

import httpx
import pytest

from serve_app.media.video import probe_mp4
from tests.conftest import BUCKET

def test_500_jobs_at_concurrency_32(serve_cluster):
    run_load(serve_cluster, 500, 32)


@pytest.mark.soak
def test_soak_5000_jobs_at_concurrency_64(serve_cluster):
    run_load(serve_cluster, 5000, 64)


def run_load(serve_cluster, JOBS, CONCURRENCY):  # noqa: N803 - read as the test's two constants
    base = serve_cluster.base_url
    s3 = serve_cluster.s3.client()

    def one(i):
        with httpx.Client(timeout=300) as client:
            for _ in range(20):  # a 429 (saturated) says when to come back; honour it
                resp = client.post(f"{base}/v1/videos", headers={"Prefer": "wait=120"},
                                   json={"prompt": f"load {i}", "size": "32x32", "num_frames": 5,
                                         "num_inference_steps": 1, "seed": i})
                if resp.status_code != 429:
                    break
                time.sleep(float(resp.headers.get("Retry-After", 1)))
            job = resp.json()
            while job["status"] not in ("completed", "failed"):
                job = client.get(f"{base}/v1/videos/{job['id']}", headers={"Prefer": "wait=60"}).json()
            return job

    start = time.monotonic()
    with cf.ThreadPoolExecutor(CONCURRENCY) as pool:
        jobs = list(pool.map(one, range(JOBS)))
    elapsed = time.monotonic() - start
    assert [j["status"] for j in jobs].count("completed") == JOBS, [j for j in jobs if j["status"] != "completed"][:3]
    ids = [j["id"] for j in jobs]
    assert len(set(ids)) == JOBS  # no job answered twice
    assert sorted(j["seed"] for j in jobs) == list(range(JOBS))  # each request got its own job

    def keys(prefix):
        out, token = [], None
        while True:
            kw = {"ContinuationToken": token} if token else {}
            page = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix, **kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    videos = set(keys("serve/videos/"))
    assert {f"serve/videos/{i}.mp4" for i in ids} <= videos
    assert not [k for k in keys("serve/active/") if k.removeprefix("serve/active/") in ids]
    for i in ids:  # every MP4 decodes, with the frames asked for
        data = s3.get_object(Bucket=BUCKET, Key=f"serve/videos/{i}.mp4")["Body"].read()
        probe, _ = probe_mp4(data, decode=False)
        assert (probe.num_frames, probe.width, probe.height) == (5, 32, 32)
    print(f"\n{JOBS} jobs at concurrency {CONCURRENCY}: {elapsed:.1f} s, {JOBS / elapsed:.1f} jobs/s")
