"""Replicas of mixed widths behind one ingress: each job goes to the pool that would finish it first."""

import pytest

from serve_app.jobs.pools import PoolLoad, choose_pool
from serve_app.settings import Settings


def send(pools: list[PoolLoad], jobs: int) -> list[int]:
    """Where `jobs` jobs sent at once go (none finishes meanwhile)."""
    chosen = []
    for _ in range(jobs):
        chosen.append(choose_pool(pools))
        pools[chosen[-1]].in_flight += 1
    return chosen


def test_before_any_job_finished_a_wider_replica_counts_as_faster_by_the_root_of_its_gpus():
    pools = [PoolLoad(width=1, replicas=1), PoolLoad(width=2, replicas=1)]
    # 2 GPUs: 0.71 a job; 1 GPU: 1.0 -> 2-GPU, 1-GPU (1.0 < 1.41), 2-GPU (1.41 < 2.0), 1-GPU (2.0 < 2.12)
    assert send(pools, 4) == [1, 0, 1, 0]


def test_learned_seconds_split_a_burst_by_speed():
    pools = [PoolLoad(width=2, replicas=1, seconds_per_job=4.8), PoolLoad(width=1, replicas=1, seconds_per_job=7.0)]
    chosen = send(pools, 8)
    assert chosen.count(0) == 5 and chosen.count(1) == 3  # both done by 24 and 21 s; 4 + 4 would take 28 s


def test_a_pool_of_several_replicas_takes_as_many_jobs_at_once():
    pools = [PoolLoad(width=1, replicas=3), PoolLoad(width=2, replicas=1)]
    assert sorted(send(pools, 4)) == [0, 0, 0, 1]


def test_ties_go_to_the_wider_pool_and_unlearned_pools_use_the_estimate():
    assert choose_pool([PoolLoad(width=1, replicas=1, seconds_per_job=5.0), PoolLoad(width=2, replicas=1)]) == 1
    assert choose_pool([PoolLoad(width=1, replicas=1, seconds_per_job=1.0),
                        PoolLoad(width=1, replicas=1, seconds_per_job=1.0)]) == 0


def test_the_moving_average_follows_the_pools_finished_jobs():
    pool = PoolLoad(width=1, replicas=1)
    pool.finished(10.0)
    pool.finished(20.0)
    assert pool.seconds_per_job == pytest.approx(13.0)


def test_pools_default_to_one_of_gpus_per_replica_and_collapse_to_one_gpu_without_one():
    assert [(p.gpus_per_replica, p.num_replicas) for p in Settings(gpus_per_replica=2).pools()] == [(2, 1)]
    settings = Settings(replica_pools=[{"gpus_per_replica": 2, "num_replicas": 1},
                                       {"gpus_per_replica": 1, "num_replicas": 2}])
    assert [(p.gpus_per_replica, p.num_replicas) for p in settings.pools()] == [(2, 1), (1, 2)]
    on_cpu = settings.resolve(gpus=0)
    assert [(p.gpus_per_replica, p.num_replicas) for p in on_cpu.pools()] == [(1, 1), (1, 2)]


def test_a_pool_width_the_heads_do_not_divide_is_refused_with_the_widths_that_work():
    with pytest.raises(ValueError, match=r"must be one of \(1, 2, 4, 8\)"):
        Settings(replica_pools=[{"gpus_per_replica": 3}])
    with pytest.raises(ValueError, match="num_replicas"):
        Settings(replica_pools=[{"gpus_per_replica": 1, "num_replicas": 0}])
