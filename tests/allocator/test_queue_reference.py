"""The optimized scheduling pass decides exactly what a straightforward one decides.

``ReferenceQueue`` schedules the plain way the queue's docstring describes: every pass scans all jobs for
the waiting ones, sorts them by the full key (computed through :meth:`JobQueue.effective_priority`), tries
every job in turn with no per-pass memory of shapes that did not fit or found no victims, and looks for
victims over every job. Both queues get the same random workload (priorities with aging across class
boundaries, gangs over nodes, fractional shares, preemptible and checkpointing jobs, quotas with borrowing
and reclaim, dependencies, retries, GPU faults, drains, cancels); after every operation the started jobs,
each job's state, placements and reason, and the cluster's free GPUs must be the same.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from gpufleet.allocator.jobs import JobSpec, PriorityClass
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import HOLDING, WAITING, JobQueue, JobRecord, TeamQuota

from tests.allocator.helpers import small_cluster


class ReferenceQueue(JobQueue):
    def ready(self, now: float) -> list[JobRecord]:
        out = []
        for rec in sorted((r for r in self.jobs.values() if r.status in WAITING), key=lambda r: r.seq):
            ok, blocked = self._blocker(rec)
            if blocked is not None and rec.reason != blocked:
                rec.reason = blocked
                for fn in self.listeners:
                    fn(rec, rec.status, rec.status, blocked, now)
            if ok and rec.not_before <= now:
                out.append(rec)
        out.sort(key=lambda r: (-int(self.effective_priority(r, now)), not r.ahead, -self.effective_priority(r, now),
                                r.seq))
        return out

    def schedule(self, now: float) -> list[str]:
        started = []
        self._now = now
        for rec in self.ready(now):  # no per-pass memory: _no_fit / _no_preempt stay None
            if self._try_start(rec, now) or self._try_with_victims(rec, now):
                started.append(rec.spec.name)
        if started:
            self._save()
        return started

    def _victims(self, rec: JobRecord, now: float) -> list[JobRecord]:
        eff = self.effective_priority(rec, now)  # every job scanned; the eligibility rule is the queue's own
        out = [r for r in self.jobs.values()
               if r.status in HOLDING and r.spec.preemptible and r is not rec and self._may_take(rec, r, eff)]
        out.sort(key=lambda r: (int(r.spec.priority), -(r.started or 0.0)))
        return out


def random_job(rng: random.Random, name: str, names: list[str]) -> JobSpec:
    kind = rng.random()
    if kind < 0.15:
        shape: dict[str, Any] = {"gpus": 1, "gpu_milli": rng.choice((250, 500))}
    elif kind < 0.3:
        shape = {"gpus": rng.choice((4, 6, 8)), "gpus_per_node": rng.choice((2, 4))}
    else:
        shape = {"gpus": rng.choice((1, 1, 2, 3, 4))}
    deps = tuple(rng.sample(names, 1)) if names and rng.random() < 0.2 else ()
    return JobSpec(name, priority=rng.choice(list(PriorityClass)), preemptible=rng.random() < 0.5,
                   checkpointing=rng.random() < 0.5, checkpoint_interval_s=rng.choice((600.0, 1800.0)),
                   team=rng.choice(("red", "blue", "green")), depends_on=deps,
                   on_failure=rng.choice(("block", "continue")), retries=rng.choice((0, 1)),
                   retry_backoff_s=rng.choice((0.0, 600.0)), duration_s=rng.choice((1800.0, 7200.0)), **shape)


def snapshot(q: JobQueue) -> dict[str, Any]:
    return {"jobs": {n: (r.status, [(p.node, p.gpus, p.milli) for p in r.placements], r.reason, r.started,
                         r.done_s, r.not_before) for n, r in q.jobs.items()},
            "free": q.state.gpu_free.tolist(), "counters": dict(q.counters)}


def run_workload(seed: int, cls: type[JobQueue]) -> list[Any]:
    rng = random.Random(seed)
    quotas = {"red": TeamQuota({"*": 4}, {"*": 10}), "blue": TeamQuota({"*": 6}, {"*": 12})}
    q = cls(small_cluster(nodes=4, gpus=4), make_policy("default"), quotas=quotas, aging_per_hour=0.75)
    trace: list[Any] = []
    now, n = 0.0, 0
    for _ in range(40):
        now += rng.choice((60.0, 900.0, 3600.0, 3 * 3600.0))  # aging crosses class boundaries
        op = rng.random()
        holding = sorted(r.spec.name for r in q.jobs.values() if r.status in HOLDING)
        if op < 0.35 or not holding:
            names = list(q.jobs)
            batch = [random_job(rng, f"j{n + i}", names) for i in range(rng.randint(1, 6))]
            n += len(batch)
            trace.append(("submit", q.submit(batch, now)[0]))
        elif op < 0.6:
            for name in rng.sample(holding, rng.randint(1, len(holding))):
                q.finish(name, now, rng.choice((0, 0, 0, 1)))
        elif op < 0.7:
            victim = q.jobs[rng.choice(holding)]
            p = victim.placements[0]
            trace.append(("fault", q.interrupt_gpu(q.state.uuids[p.node][p.gpus[0]], now)))
        elif op < 0.75:
            trace.append(("drain", q.drain_node(q.state.names[rng.randrange(4)], now)))
        elif op < 0.8:
            waiting = sorted(r.spec.name for r in q.jobs.values() if r.status in WAITING)
            if waiting:
                q.cancel(rng.choice(waiting), now)
        trace.append(("pass", now, q.schedule(now)))
        trace.append(snapshot(q))
    return trace


@pytest.mark.parametrize("seed", range(12))
def test_optimized_pass_decides_like_the_reference(seed: int) -> None:
    expected = run_workload(seed, ReferenceQueue)
    got = run_workload(seed, JobQueue)
    passes = [t for t in expected if isinstance(t, tuple) and t[0] == "pass"]
    assert sum(len(t[2]) for t in passes) > 10  # the workload does start jobs
    last = expected[-1]["counters"]
    assert last["preemptions"] + last["reclaims"] + last["interruptions"] > 0  # and takes GPUs back
    for step, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert g == e, f"seed {seed}, step {step}"


def test_pending_index_follows_every_state_change() -> None:
    """The waiting-jobs index is kept on each status change; a requeued job goes back to its seq place."""
    q = JobQueue(small_cluster(nodes=1, gpus=4), make_policy("default"))
    q.submit([JobSpec(f"p{i}", gpus=4, priority=PriorityClass.BATCH, preemptible=True) for i in range(3)], now=0)
    assert q.schedule(0) == ["p0"]
    assert q.pending_names() == ["p1", "p2"]
    q.submit([JobSpec("hi", gpus=4, priority=PriorityClass.HIGH)], now=10)
    assert q.schedule(10) == ["hi"]  # p0 preempted: waiting again, ahead of p1 by seq
    assert q.pending_names() == ["p0", "p1", "p2"]
    q.cancel("p1", 20)
    assert q.pending_names() == ["p0", "p2"]
    assert [r.spec.name for r in q.ready(20)] == ["p0", "p2"]
