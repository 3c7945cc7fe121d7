"""The lease/attempt state machine, crashed at every point: whatever storage operation a crash lands on, and
however many times, every accepted job ends finished exactly once, and no marker or lease is left behind.

A "process" is one job core on the shared storage. Its crash is modelled as storage that, from the k-th
write on, raises `Crash` (a BaseException: no `except Exception` of the service survives it) for that
process only, which then stops. The next process is a new core on the same folder, with its own crash
point or none; the last one runs clean until nothing is unfinished. The real generator replica is
replaced by the fake one: what is tested here is the job core's bookkeeping.
"""

import asyncio
import json
import random

import pytest

from serve_app.inputs import resolve
from serve_app.jobs.records import JobRecord, JobStatus
from serve_app.settings import Settings
from serve_app.storage.local import LocalStorage
from tests.support.app import job_core
from tests.support.fakes import FakeGenerator

SETTINGS = dict(default_width=32, default_height=32, default_num_frames=5, stale_after_s=0.001, heartbeat_s=0.05,
                recovery_interval_s=0.05, max_attempts=4, storage_retry_s=0.0)


class Crash(BaseException):
    """The process died."""


class CrashingStorage(LocalStorage):
    """Local storage whose writes fail for good from the `crash_at`-th one on (None: never)."""

    def __init__(self, root, crash_at: int | None, journal: list):
        super().__init__(root)
        self.crash_at, self.writes, self.journal = crash_at, 0, journal

    def _write(self, what: str, key: str, data: bytes | None = None) -> None:
        self.writes += 1
        if self.crash_at is not None and self.writes >= self.crash_at:
            raise Crash(f"crashed at write {self.writes} ({what} {key})")
        if key.startswith("jobs/") and data is not None:
            self.journal.append(json.loads(data))

    def put_bytes(self, key, data, content_type):
        self._write("put", key, data)
        return super().put_bytes(key, data, content_type)

    def put_if_absent(self, key, data, content_type):
        self._write("put-if-absent", key)
        return super().put_if_absent(key, data, content_type)

    def delete(self, key):
        self._write("delete", key)
        return super().delete(key)


def params(i):
    s = Settings(**SETTINGS).resolve(gpus=0)
    return resolve(s.generation, s.limits, prompt=f"job {i}", seed=i)


async def run_process(root, crash_at, journal, submit: int = 0) -> list[str]:
    """One process's life: submit some jobs, recover orphans, until it crashes or nothing is unfinished."""
    storage = CrashingStorage(root, crash_at, journal)
    core = job_core(root, FakeGenerator(), storage=storage, **SETTINGS)
    accepted = []
    try:
        await core.start()
        for i in range(submit):
            job, _ = await core.service.submit(params(i))
            accepted.append(job.id)
        for _ in range(400):
            await asyncio.sleep(0.01)
            await core.recovery.recover_once()
            if not storage.list_keys("active/") and not core.runner.live:
                break
    except Crash:
        pass
    finally:
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()
    return accepted


def check_invariant(root, accepted, journal):
    storage = LocalStorage(root)
    for job_id in accepted:
        job = JobRecord.model_validate_json(storage.get_bytes(f"jobs/{job_id}.json"))
        assert job.status.terminal, job
        if job.status == JobStatus.completed:
            assert storage.exists(f"videos/{job_id}.mp4") and storage.get_bytes(f"videos/{job_id}.mp4")[4:8] == b"ftyp"
        else:
            assert job.error.code == "lost" and "interrupted" in job.error.message, job.error
        # finished exactly once: after the first terminal write, the record never says anything else
        writes = [w for w in journal if w["id"] == job_id]
        first = next(i for i, w in enumerate(writes) if w["status"] in ("completed", "failed"))
        assert {(w["status"], w["video_key"]) for w in writes[first:]} == {(job.status.value, job.video_key)}
    assert storage.list_keys("active/") == [] and storage.list_keys("leases/") == []


@pytest.mark.parametrize("seed", range(24))
def test_any_crashes_at_any_points_end_with_every_job_finished_once(tmp_path, seed):
    rng = random.Random(seed)
    journal: list = []
    # the first process accepts jobs and crashes somewhere in its life; 1-3 more crash while recovering
    accepted = asyncio.run(run_process(tmp_path, rng.randint(8, 60), journal, submit=3))
    for _ in range(rng.randint(1, 3)):
        asyncio.run(run_process(tmp_path, rng.randint(1, 25), journal))
    asyncio.run(run_process(tmp_path, None, journal))
    check_invariant(tmp_path, accepted, journal)


def test_the_second_crash_during_adoption_no_longer_strands_jobs(tmp_path):
    """The reported case: a crash, then another crash right after claiming the lease, before anything else is
    written; the old code then looked for lease `attempts + 1` forever (attempts was never saved)."""
    journal: list = []
    accepted = asyncio.run(run_process(tmp_path, 3 * 4 + 1, journal, submit=3))  # crashes after accepting 3
    asyncio.run(run_process(tmp_path, 2, journal))  # claims a lease (write 1), then dies at write 2
    asyncio.run(run_process(tmp_path, 2, journal))  # and again
    asyncio.run(run_process(tmp_path, None, journal))
    check_invariant(tmp_path, accepted, journal)
    leases = [w for w in journal if w["id"] == accepted[0]]
    assert leases[-1]["status"] == "completed"
