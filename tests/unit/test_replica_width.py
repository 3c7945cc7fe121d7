"""A generator replica of several GPUs (`gpus_per_replica`): each video's DiT split across them.

What is decided before FastVideo runs is tested here: the setting's values, the Ray placement that puts a
replica's GPUs on one node, FastVideo's arguments, and the start-up refusals. FastVideo's sequence
parallelism itself: over two gloo processes in tests/fastvideo/test_split_over_processes.py, over two GPUs in
tests/gpu/test_sequence_parallel.py.
"""

import pytest
from pydantic import ValidationError

from serve_app.app import check_replica_width, generator_options
from serve_app.backends.fastvideo.startup import generator_kwargs
from serve_app.settings import Settings


def wide(**values) -> Settings:
    return Settings(backend="fastvideo", device="cuda", **values).resolve(gpus=2)


def test_only_widths_that_split_the_heads_evenly_on_one_node_are_accepted(monkeypatch):
    for good in (1, 2, 4, 8):
        assert Settings(gpus_per_replica=good).gpus_per_replica == good
    for bad in (0, 3, 16):
        with pytest.raises(ValidationError, match="gpus_per_replica must be one of"):
            Settings(gpus_per_replica=bad)
    monkeypatch.setenv("FASTWAN_GPUS_PER_REPLICA", "2")
    assert Settings().gpus_per_replica == 2


def test_a_wide_replica_gets_one_gpu_bundle_per_worker_on_one_node():
    opts = generator_options(wide(gpus_per_replica=2, generator_resources={"gpu_node": 1}))
    assert opts["ray_actor_options"]["num_gpus"] == 0  # FastVideo's workers hold the GPUs, the replica none
    assert opts["placement_group_bundles"] == [{"CPU": 1, "GPU": 1, "gpu_node": 1}, {"GPU": 1, "gpu_node": 1}]
    assert opts["placement_group_strategy"] == "STRICT_PACK"
    mp = generator_options(wide(gpus_per_replica=4, fastvideo_executor="mp"))
    assert mp["ray_actor_options"]["num_gpus"] == 4 and "placement_group_bundles" not in mp


def test_fastvideo_is_asked_for_the_same_number_of_gpus_and_sequence_parallel_ranks():
    kwargs = generator_kwargs(wide(gpus_per_replica=2).fastvideo, "speed")
    assert (kwargs["num_gpus"], kwargs["sp_size"]) == (2, 2)
    one = generator_kwargs(wide().fastvideo, "speed")
    assert (one["num_gpus"], one["sp_size"]) == (1, 1)


def test_the_cpu_fallback_makes_each_video_in_one_process():
    s = Settings(gpus_per_replica=2).resolve(gpus=0)
    assert (s.device, s.gpus_per_replica) == ("cpu", 1)
    check_replica_width(s, node_gpus=[])  # nothing to refuse
    assert generator_options(s)["ray_actor_options"] == {"num_cpus": 1}


def test_a_start_that_could_never_place_its_replica_is_refused_with_what_to_change():
    with pytest.raises(ValueError, match="largest node of this Ray cluster has 1 GPUs.*lower gpus_per_replica"):
        check_replica_width(wide(gpus_per_replica=2), node_gpus=[1.0, 1.0])  # two GPUs, but not on one node
    with pytest.raises(ValueError, match="needs the FastVideo backend"):
        check_replica_width(Settings(backend="diffusers", device="cuda", gpus_per_replica=2).resolve(gpus=2),
                            node_gpus=[2.0])
    check_replica_width(wide(gpus_per_replica=2), node_gpus=[1.0, 2.0])
    check_replica_width(wide(gpus_per_replica=1), node_gpus=[1.0])
