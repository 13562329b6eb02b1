from __future__ import annotations

from pathlib import Path

import pytest
from gpufleet.allocator.jobs import JobSpec, PriorityClass
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import DONE, PENDING, REQUEUED, RUNNING, JobQueue, TeamQuota
from gpufleet.allocator.state import Health
from gpufleet.exporter.errors import Conflict, InputError

from tests.allocator.helpers import small_cluster


def make_queue(path: Path | None = None, **kw: object) -> JobQueue:
    return JobQueue(small_cluster(nodes=2, gpus=4), make_policy("default"), path=path, **kw)  # type: ignore[arg-type]


def test_dag_runs_in_dependency_order() -> None:
    q = make_queue()
    ok, rej = q.submit([JobSpec("train", gpus=2), JobSpec("eval", gpus=1, depends_on=("train",))], now=0)
    assert ok == ["train", "eval"] and not rej
    assert q.schedule(0) == ["train"]
    assert q.jobs["eval"].status == PENDING
    q.complete("train", 10)
    assert q.schedule(10) == ["eval"]


def test_cycle_rejected_at_submission() -> None:
    q = make_queue()
    with pytest.raises(Conflict, match="a -> b -> a"):
        q.submit([JobSpec("a", depends_on=("b",)), JobSpec("b", depends_on=("a",))], now=0)


def test_fifo_inside_class_and_priority_first() -> None:
    q = make_queue()
    q.submit([JobSpec(f"low{i}", gpus=4, priority=PriorityClass.BATCH) for i in range(3)]
             + [JobSpec("hi", gpus=4, priority=PriorityClass.HIGH)], now=0)
    assert q.schedule(0) == ["hi", "low0"]


def test_aging_lifts_a_waiting_job() -> None:
    q = make_queue(aging_per_hour=1.0)
    q.submit([JobSpec("old", gpus=1, priority=PriorityClass.BATCH)], now=0)
    q.submit([JobSpec("new", gpus=1, priority=PriorityClass.NORMAL)], now=3 * 3600)
    ready = [r.spec.name for r in q.ready(3 * 3600)]
    assert ready == ["old", "new"]


def test_preemption_of_lower_preemptible_and_lost_hours() -> None:
    q = make_queue()
    q.submit([JobSpec(f"b{i}", gpus=4, priority=PriorityClass.BATCH, preemptible=True, checkpointing=True,
                      checkpoint_interval_s=1800) for i in range(2)], now=0)
    assert len(q.schedule(0)) == 2
    q.submit([JobSpec("urgent", gpus=4, priority=PriorityClass.HIGH)], now=3600 + 900)
    assert q.schedule(3600 + 900) == ["urgent"]
    assert q.counters["preemptions"] == 1
    victim = next(r for r in q.jobs.values() if r.preemptions)
    assert victim.status == REQUEUED
    assert victim.done_s == 3600  # resumes from the last checkpoint
    assert victim.lost_gpu_hours == pytest.approx(4 * 0.25)


def test_no_preemption_of_non_preemptible() -> None:
    q = make_queue()
    q.submit([JobSpec(f"b{i}", gpus=4, priority=PriorityClass.BATCH) for i in range(2)], now=0)
    q.schedule(0)
    q.submit([JobSpec("urgent", gpus=4, priority=PriorityClass.HIGH)], now=10)
    assert q.schedule(10) == []
    assert q.counters["preemptions"] == 0


def test_gpu_failure_requeues_from_checkpoint() -> None:
    q = make_queue()
    q.submit([JobSpec("ckpt", gpus=4, checkpointing=True, checkpoint_interval_s=600),
              JobSpec("nockpt", gpus=4)], now=0)
    q.schedule(0)
    on0 = q.jobs_on(0)[0]
    uuid = q.state.uuids[on0.placements[0].node][on0.placements[0].gpus[0]]
    hit = q.interrupt_gpu(uuid, now=1500)
    assert hit == [on0.spec.name]
    assert on0.status == REQUEUED and on0.restarts == 1
    expected_saved = 1200 if on0.spec.checkpointing else 0
    assert on0.done_s == expected_saved
    assert q.counters["gpu_hours_lost"] == pytest.approx(4 * (1500 - expected_saved) / 3600)
    # the failed GPU takes no new work: the 4-GPU job cannot fit on its node again
    assert q.schedule(1500) == []


def test_drain_requeues_and_blocks_node() -> None:
    q = make_queue()
    q.submit([JobSpec("a", gpus=2, preemptible=True)], now=0)
    q.schedule(0)
    node = q.state.names[q.jobs["a"].placements[0].node]
    assert q.drain_node(node, now=100) == ["a"]
    assert q.state.node_health[q.state.node_index(node)] == Health.DRAINING
    assert q.schedule(100) == ["a"]
    assert q.state.names[q.jobs["a"].placements[0].node] != node


def test_quota_max_and_reclaim_from_borrower() -> None:
    quotas = {"red": TeamQuota({"A100": 4}, {"A100": 8}), "blue": TeamQuota({"A100": 4}, {"A100": 8})}
    q = make_queue(quotas=quotas)
    q.submit([JobSpec(f"blue{i}", gpus=4, team="blue", preemptible=True) for i in range(2)], now=0)
    assert len(q.schedule(0)) == 2  # blue borrows red's idle guarantee
    q.submit([JobSpec("blue-extra", gpus=1, team="blue")], now=1)
    assert q.schedule(1) == []  # above blue's maximum
    q.submit([JobSpec("red0", gpus=4, team="red")], now=5)
    assert q.schedule(5) == ["red0"]
    assert q.counters["reclaims"] == 1
    assert q.team_usage("blue", "A100") == 4 and q.team_usage("red", "A100") == 4


def test_state_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "queue.json"
    q = make_queue(path)
    q.submit([JobSpec("a", gpus=3), JobSpec("b", gpus=1, depends_on=("a",)), JobSpec("c", gpus=1, gpu_milli=300)],
             now=0)
    q.schedule(0)
    before = q.state.allocation_ratio()
    q2 = JobQueue.load(path, small_cluster(nodes=2, gpus=4), make_policy("default"))
    assert {n: r.status for n, r in q2.jobs.items()} == {"a": RUNNING, "b": PENDING, "c": RUNNING}
    assert q2.state.allocation_ratio() == pytest.approx(before)
    q2.complete("a", 50)
    assert q2.schedule(50) == ["b"]
    assert q2.jobs["a"].status == DONE and len(q2.usage) == 1


def test_corrupt_state_names_file(tmp_path: Path) -> None:
    path = tmp_path / "queue.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"queue\.json"):
        JobQueue.load(path, small_cluster(), make_policy("default"))


def test_one_pass_places_again_after_a_preemption_frees_gpus() -> None:
    """The pass remembers request shapes that did not fit; a preemption frees GPUs and must make it forget."""
    q = make_queue()
    q.submit([JobSpec(f"b{i}", gpus=1, priority=PriorityClass.BATCH, preemptible=True, duration_s=100 + i)
              for i in range(8)], now=0)
    assert len(q.schedule(0)) == 8  # the cluster is full
    # a BATCH job that cannot fit, then two HIGH jobs of the same shape with different durations: each
    # preempts one batch job, and a small one fits into what the preemptions left over
    q.submit([JobSpec("b-late", gpus=1, priority=PriorityClass.BATCH, duration_s=5),
              JobSpec("h0", gpus=2, priority=PriorityClass.HIGH, duration_s=50),
              JobSpec("h1", gpus=2, priority=PriorityClass.HIGH, duration_s=70)], now=1)
    started = q.schedule(1)
    assert {"h0", "h1"} <= set(started)
    assert q.jobs["b-late"].status == PENDING  # lowest class: it may not preempt its own class
    assert sum(r.status == RUNNING for r in q.jobs.values()) == 6 and q.counters["preemptions"] == 4


def test_a_shape_that_did_not_fit_does_not_hide_a_smaller_one() -> None:
    q = make_queue()
    q.submit([JobSpec("x", gpus=4, duration_s=10), JobSpec("y", gpus=1, duration_s=10)], now=0)
    assert q.schedule(0) == ["x", "y"]  # 3 GPUs left, on one node
    q.submit([JobSpec("big", gpus=4, duration_s=10), JobSpec("big2", gpus=4, duration_s=20),
              JobSpec("small", gpus=1, duration_s=10), JobSpec("three", gpus=2, duration_s=10)], now=1)
    assert q.schedule(1) == ["small", "three"]
    q.complete("x", 5)  # frees a whole node: the next pass places a 4-GPU job again
    assert q.schedule(5) == ["big"]
