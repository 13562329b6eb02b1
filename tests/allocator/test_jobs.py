from __future__ import annotations

import pytest
from gpufleet.allocator.jobs import JobSpec, Limits, PriorityClass, check_job, find_cycle, validate_batch
from gpufleet.exporter.errors import Conflict, InputError

from tests.allocator.helpers import small_cluster


@pytest.fixture
def limits() -> Limits:
    return Limits.of(small_cluster(nodes=2, gpus=4))


def test_good_job_passes(limits: Limits) -> None:
    assert check_job(JobSpec("a", gpus=4, gpu_types=("A100",)), limits) is None
    assert check_job(JobSpec("b", gpus=1, gpu_milli=250), limits) is None


@pytest.mark.parametrize("job, words", [
    (JobSpec("big", gpus=9), "largest pool"),
    (JobSpec("wide", gpus=8), "on one node"),
    (JobSpec("neg", gpus=-1), "negative size"),
    (JobSpec("mem", gpus=1, gpu_memory_bytes=-5), "negative size"),
    (JobSpec("type", gpus=1, gpu_types=("H100",)), "unknown GPU type"),
    (JobSpec("huge-mem", gpus=1, gpu_memory_bytes=200 << 30), "GPU memory"),
])
def test_bad_jobs_rejected_with_reason(limits: Limits, job: JobSpec, words: str) -> None:
    reason = check_job(job, limits)
    assert reason is not None and words in reason


def test_gang_spread_over_nodes_accepted(limits: Limits) -> None:
    job = JobSpec("wide", gpus=8, gpus_per_node=4)
    assert check_job(job, limits) is None
    assert [m.num_gpu for m in job.members()] == [4, 4]


def test_missing_dependency_rejected_and_propagates(limits: Limits) -> None:
    ok, rejected = validate_batch([JobSpec("a", depends_on=("ghost",)), JobSpec("b", depends_on=("a",)),
                                   JobSpec("c")], limits)
    assert [j.name for j in ok] == ["c"]
    reasons = {r.job: r.reason for r in rejected}
    assert "ghost" in reasons["a"]
    assert "a (rejected)" in reasons["b"]


def test_cycle_is_named(limits: Limits) -> None:
    with pytest.raises(Conflict, match="x -> y -> z -> x"):
        validate_batch([JobSpec("x", depends_on=("y",)), JobSpec("y", depends_on=("z",)),
                        JobSpec("z", depends_on=("x",)), JobSpec("free")], limits)
    assert find_cycle({"a": ["b"], "b": []}) is None


def test_round_trip_and_bad_fields() -> None:
    j = JobSpec("a", gpus=2, priority=PriorityClass.HIGH, depends_on=("b",), gpu_types=("A100",))
    assert JobSpec.from_dict(j.to_dict()) == j
    with pytest.raises(InputError, match="unknown field"):
        JobSpec.from_dict({"name": "a", "gpu": 1})
    with pytest.raises(InputError, match="priority class"):
        JobSpec.from_dict({"name": "a", "priority": "urgent"})
