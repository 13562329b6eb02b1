"""The job queue: batch submission, a dependency DAG, priority classes with aging, preemption, interrupt
recovery from checkpoints, team quotas with borrowing and reclaim, and state that survives a restart.

Scheduling (:meth:`JobQueue.schedule`): jobs whose dependencies have all completed are tried in order of
effective priority (class + ``aging_per_hour`` × hours waited), FIFO inside equal priority. A job that fits
starts (a gang all-or-nothing: every member placed or none). A job that does not fit may preempt running
preemptible jobs of a strictly lower class (lowest class, newest first) when freeing them makes it fit.
Lower jobs may start behind a blocked one (backfill); aging lifts long waiters until they can preempt.

Quotas: each team has a guaranteed and a maximum GPU count per GPU type (``"*"`` = any type). Above its
guarantee a team borrows idle capacity; when a team within its guarantee cannot place a job, preemptible
jobs of teams running above their guarantee on that type are preempted to give the GPUs back.

Interrupts (:meth:`JobQueue.interrupt_gpu`, :meth:`JobQueue.drain_node`): jobs on a failed or drained GPU are
requeued to resume from their last checkpoint; the GPU-hours since that checkpoint are counted as lost.
Preempted jobs are requeued the same way.

Lifecycle: ``pending`` → ``placed`` (GPUs chosen and held) → ``starting`` (handed to the executor) →
``running`` → ``succeeded`` | ``failed`` | ``cancelled`` | ``interrupted`` (→ ``requeued``, waiting again, ahead
of its class when a fault interrupted it). Every change goes through :meth:`JobQueue._transition`, which
calls each function in ``listeners`` with ``(record, old_state, new_state, reason, now)`` (audit, metrics).
With ``auto_start`` (the simulated executor) a placed job runs at once; otherwise the job service drives
``starting`` / ``running`` / the exit through :meth:`JobQueue.mark` and :meth:`JobQueue.finish`. A failed run
is retried ``retries`` times with doubling backoff; a dependant of a job that failed for good stays blocked
with the reason, or runs when its ``on_failure`` is ``continue``.

Persistence: with a :class:`QueueStore` (the service's database, ``gpufleet.state``) every operation writes
only what it changed — the job rows touched, their state transitions, new usage stretches, changed operator
overrides, the sequence and counters — as one :class:`QueueChanges` batch (one transaction; a scheduling
pass is one batch). A :class:`JobRecord` reports every attribute change to its queue, so a new code path
that changes a job cannot forget to persist it. Without a store, ``path`` keeps the older whole-file JSON
(write to a temporary file, then rename; used by the offline ``gpufleet allocator`` tools) and
:meth:`JobQueue.load` restores it, re-applying placements.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from operator import itemgetter
from pathlib import Path
from typing import Any

from gpufleet.allocator import preemption, queue_persist
from gpufleet.allocator.jobs import JobSpec, Limits, PriorityClass, Rejection, validate_batch
from gpufleet.allocator.policies.base import Policy, Request
from gpufleet.allocator.records import (
    CANCELLED,
    DONE,
    FAILED,
    FINAL,
    HOLDING,
    INTERRUPTED,
    PENDING,
    PLACED,
    REQUEUED,
    RUNNING,
    STARTING,
    STATES,
    SUCCEEDED,
    WAITING,
    JobRecord,
    Listener,
    QueueChanges,
    QueueStore,
    TeamQuota,
    Usage,
)
from gpufleet.allocator.state import FULL, ClusterState, Health, Placement
from gpufleet.exporter.errors import InputError, NotFound

_FIRST = itemgetter(0)


class JobQueue:
    def __init__(self, state: ClusterState, policy: Policy, *, quotas: Mapping[str, TeamQuota] | None = None,
                 aging_per_hour: float = 0.25, path: str | Path | None = None,
                 store: QueueStore | None = None, auto_start: bool = True) -> None:
        self.store = store
        self.state = state
        self.policy = policy
        self.quotas = dict(quotas or {})
        self.aging_per_hour = aging_per_hour
        self.path = Path(path) if path else None
        self.jobs: dict[str, JobRecord] = {}
        self.usage: list[Usage] = []
        self.counters = {"preemptions": 0, "interruptions": 0, "reclaims": 0, "gpu_hours_lost": 0.0}
        self._seq = 0
        self._seen: list[Request] = []
        # waiting jobs (pending or requeued) in ``seq`` order, kept up to date on every status change (_track)
        self._pending: dict[str, JobRecord] = {}
        self._pending_top = 0  # the highest seq in _pending's order; a lower one added marks it unsorted
        self._pending_unsorted = False
        # preemptible jobs that hold GPUs (placed, starting, running): the only possible victims
        self._victim_pool: dict[str, JobRecord] = {}
        self._shape_ids: dict[tuple[Request, ...], int] = {}
        self._observed = 0
        self.limits = Limits.of(state)
        self.auto_start = auto_start
        self.listeners: list[Listener] = []
        # write-through bookkeeping (see QueueChanges): records touched, transitions, usage not yet written
        self._dirty: dict[str, JobRecord] = {}
        self._transitions: list[tuple[str, str | None, str, float]] = []
        self._usage_written = 0
        self._batch_depth = 0
        self._now: float | None = None
        # within one scheduling pass: request shapes (their ids, see _shape_id) that did not fit, (priority,
        # team, shape id) that found no victims; None outside a pass
        self._no_fit: set[int] | None = None
        self._no_preempt: set[tuple[int, str, int]] | None = None

    def _transition(self, rec: JobRecord, new: str, reason: str | None, now: float) -> None:
        """The one place a job changes state; tells every listener (audit, metrics)."""
        self._now = now
        old = rec.status
        rec.status = new
        if reason is not None or new in (PLACED, SUCCEEDED):
            rec.reason = reason
        for fn in self.listeners:
            fn(rec, old, new, reason or "", now)

    def _watch(self, rec: JobRecord, name: str, old: Any, new: Any) -> None:
        self._dirty[rec.spec.name] = rec
        if name == "status" and old != new:
            at = self._now if self._now is not None else time.time()
            self._transitions.append((rec.spec.name, old, new, at))
            self._track(rec)

    def _track(self, rec: JobRecord) -> None:
        """Keep the index of waiting jobs in step with ``rec``'s status (called on every status change)."""
        name = rec.spec.name
        if rec.status in HOLDING and rec.spec.preemptible:
            self._victim_pool[name] = rec
        else:
            self._victim_pool.pop(name, None)
        if rec.status not in WAITING:
            self._pending.pop(name, None)
        elif name not in self._pending:
            self._pending[name] = rec
            if rec.seq < self._pending_top:
                self._pending_unsorted = True  # a requeued job: back to its place by seq when next read
            else:
                self._pending_top = rec.seq

    def _adopt(self, rec: JobRecord, new: bool) -> None:
        """Hold ``rec`` in this queue: watch its changes (and record its creation when ``new``)."""
        self.jobs[rec.spec.name] = rec
        rec._watch = self._watch  # type: ignore[attr-defined]
        self._track(rec)
        if new:
            self._dirty[rec.spec.name] = rec
            self._transitions.append((rec.spec.name, None, rec.status,
                                      self._now if self._now is not None else rec.submitted))

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several operations into one write (one transaction)."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
        self._save()

    # ------------------------------------------------------------------ submission
    def submit(self, jobs: Iterable[JobSpec], now: float) -> tuple[list[str], list[Rejection]]:
        """Validate a batch and queue the good jobs; returns (accepted names, rejections with reasons)."""
        self._now = now
        ok, rejected = validate_batch(jobs, self.limits, known=self.jobs.keys())
        for j in ok:
            self._seq += 1
            rec = JobRecord(j, self._seq, now)
            self._adopt(rec, new=True)
            for fn in self.listeners:
                fn(rec, "", PENDING, "submitted", now)
        observe = getattr(self.policy, "observe", None)
        if ok and observe is not None:  # policies that learn the request mix see the submitted jobs
            self._seen.extend(m for j in ok for m in j.members())
            if len(self._seen) >= 1.25 * self._observed:  # re-learn when the history has grown by a quarter
                observe(self._seen)
                self._observed = len(self._seen)
        self._save()
        return [j.name for j in ok], rejected

    def cancel(self, name: str, now: float, reason: str = "cancelled") -> None:
        rec = self._get(name)
        self._now = now
        if rec.status in HOLDING:
            self._stop(rec, now)
        rec.finished = now
        self._transition(rec, CANCELLED, reason, now)
        self._save()

    def _get(self, name: str) -> JobRecord:
        try:
            return self.jobs[name]
        except KeyError:
            raise NotFound(f"no job named {name}") from None

    # ------------------------------------------------------------------ scheduling
    def effective_priority(self, rec: JobRecord, now: float) -> float:
        return int(rec.spec.priority) + self.aging_per_hour * max(0.0, now - rec.submitted) / 3600.0

    def _blocker(self, rec: JobRecord) -> tuple[bool, str | None]:
        """(ready, reason it is blocked for good) from its dependencies."""
        ready = True
        for name in rec.spec.depends_on:
            d = self.jobs.get(name)
            if d is None:
                return False, f"dependency {name} does not exist"
            if d.status == SUCCEEDED:
                continue
            if d.status in (FAILED, CANCELLED):
                if rec.spec.on_failure == "continue":
                    continue
                return False, f"blocked: dependency {name} {d.status}" + (f" ({d.reason})" if d.reason else "")
            ready = False
        return ready, None

    def ready(self, now: float) -> list[JobRecord]:
        """Waiting jobs whose dependencies have completed (or failed, with ``on_failure: continue``), best
        first; a job requeued after a fault goes first in its class."""
        return [rec for _, rec in self._ready_keyed(now)]

    def _ready_keyed(self, now: float) -> list[tuple[int, JobRecord]]:
        """:meth:`ready` as ``(int(effective priority), record)``, best first.

        The order is ``(-int(effective priority), not ahead, -effective priority, seq)``. The effective priority
        is computed inline exactly as :meth:`effective_priority` does (same arithmetic, so the same floats);
        jobs without dependencies skip the DAG check. Jobs are read in ``seq`` order and grouped by their few
        ``(-int(priority), not ahead)`` values, each group sorted (stably) by the float alone: the same order
        as sorting whole tuples, at a fraction of the comparisons."""
        aging = self.aging_per_hour
        listeners = self.listeners
        groups: dict[tuple[int, bool], list[tuple[float, JobRecord]]] = {}
        for rec in self._waiting():
            spec = rec.spec
            if spec.depends_on:
                ok, blocked = self._blocker(rec)
                if blocked is not None and rec.reason != blocked:
                    rec.reason = blocked
                    for fn in listeners:
                        fn(rec, rec.status, rec.status, blocked, now)
                if not ok:
                    continue
            if not rec.not_before <= now:
                continue
            waited = now - rec.submitted
            eff = self._prio_of(rec) + aging * (waited if waited > 0.0 else 0.0) / 3600.0
            g = (-int(eff), not rec.ahead)
            group = groups.get(g)
            if group is None:
                group = groups[g] = []
            group.append((-eff, rec))
        out: list[tuple[int, JobRecord]] = []
        for (neg_prio, _), group in sorted(groups.items(), key=_FIRST):
            group.sort(key=_FIRST)  # stable: equal priorities stay in seq order
            prio = -neg_prio
            out.extend([(prio, rec) for _, rec in group])
        return out

    def _waiting(self) -> list[JobRecord]:
        """Waiting jobs in ``seq`` order (the index :meth:`_track` keeps)."""
        if self._pending_unsorted:
            self._pending = dict(sorted(self._pending.items(), key=lambda kv: kv[1].seq))
            self._pending_unsorted = False
        return list(self._pending.values())

    def pending_names(self) -> list[str]:
        """Names of pending jobs, in submission (``seq``) order."""
        return [r.spec.name for r in self._waiting()]

    def schedule(self, now: float) -> list[str]:
        """Start every ready job that fits (preempting or reclaiming where allowed); returns started names.

        Within one pass the cluster only fills up until something is released, so a request shape that did
        not fit does not fit again: the pass remembers it (and which priority and team found nothing to
        preempt) until GPUs are freed or a job starts, and a full cluster with thousands of waiting jobs of a
        few shapes costs one placement attempt per shape, not per job: a job whose shape did not fit and whose
        (priority, team, shape) found no victims is passed over without a call."""
        started = []
        self._now = now
        no_fit: set[int] = set()
        no_preempt: set[tuple[int, str, int]] = set()
        self._no_fit, self._no_preempt = no_fit, no_preempt
        try:
            for prio, rec in self._ready_keyed(now):
                sid = self._shape_id(rec)
                if sid in no_fit and (prio, rec.spec.team, sid) in no_preempt:
                    continue  # exactly what _try_start and _try_with_victims would conclude, without the calls
                if self._try_start(rec, now) or self._try_with_victims(rec, now):
                    started.append(rec.spec.name)
                no_fit, no_preempt = self._no_fit, self._no_preempt  # (rebound by _try_with_victims' restore)
        finally:
            self._no_fit = self._no_preempt = None
        if started:
            self._save()
        return started

    @staticmethod
    def _prio_of(rec: JobRecord) -> int:
        """``int(rec.spec.priority)``, kept on the record (a spec never changes)."""
        p: int | None = rec.__dict__.get("_prio")
        if p is None:
            p = rec._prio = int(rec.spec.priority)  # type: ignore[attr-defined]  # private: not persisted
        return p

    def _shape_id(self, rec: JobRecord) -> int:
        """A small integer naming :meth:`_shape_of` (equal shapes, equal ids), kept on the record."""
        sid: int | None = rec.__dict__.get("_sid")
        if sid is None:
            shape = self._shape_of(rec)
            sid = self._shape_ids.setdefault(shape, len(self._shape_ids))
            rec._sid = sid  # type: ignore[attr-defined]  # private: not a persisted field
        return sid

    @staticmethod
    def _shape_of(rec: JobRecord) -> tuple[Request, ...]:
        """What decides whether a job fits: its members' resources, not their durations (kept on the record:
        a spec never changes)."""
        shape: tuple[Request, ...] | None = rec.__dict__.get("_shape")
        if shape is None:
            shape = tuple(replace(r, duration_s=None) for r in rec.spec.members())
            rec._shape = shape  # type: ignore[attr-defined]  # private: not a persisted field
        return shape

    def _freed(self) -> None:
        """GPUs were released (or the set of running jobs changed): what did not fit may fit now."""
        if self._no_fit is not None:
            self._no_fit.clear()
        if self._no_preempt is not None:
            self._no_preempt.clear()

    def _place_all(self, rec: JobRecord) -> list[Placement] | None:
        """Place every member (allocating as it goes); roll back and return None if any member fails."""
        shape = self._shape_id(rec)
        if self._no_fit is not None and shape in self._no_fit:
            return None
        members = rec.spec.members()
        done: list[tuple[Placement, int, int]] = []
        for req in members:
            p = self.policy.place(self.state, req)
            if p is None:
                for q, c, m in reversed(done):
                    self.state.release(q, c, m)
                if self._no_fit is not None:
                    self._no_fit.add(shape)
                return None
            self.state.allocate(p, req.cpu_milli, req.mem_mib)
            done.append((p, req.cpu_milli, req.mem_mib))
        return [p for p, _, _ in done]

    def _type_of(self, placements: list[Placement]) -> str:
        return self.state.models[self.state.model_id[placements[0].node]] if placements else ""

    def team_usage(self, team: str, gpu_type: str) -> float:
        return sum(r.spec.gpu_count for r in self.jobs.values()
                   if r.status in HOLDING and r.spec.team == team and r.gpu_type == gpu_type)

    def _quota_ok(self, rec: JobRecord, gpu_type: str) -> bool:
        q = self.quotas.get(rec.spec.team)
        if q is None:
            return True
        return self.team_usage(rec.spec.team, gpu_type) + rec.spec.gpu_count <= q.get("maximum", gpu_type) + 1e-9

    def _try_start(self, rec: JobRecord, now: float) -> bool:
        ps = self._place_all(rec)
        if ps is None:
            return False
        gtype = self._type_of(ps)
        if not self._quota_ok(rec, gtype):
            self._unplace(rec, ps)
            return False
        rec.placements = ps
        rec.gpu_type = gtype
        rec.started = now
        if self._no_preempt is not None:
            self._no_preempt.clear()  # a new running job may be someone's victim
        if rec.first_start is None:
            rec.first_start = now
        self._transition(rec, PLACED, None, now)
        if self.auto_start:
            self._transition(rec, STARTING, None, now)
            self._transition(rec, RUNNING, None, now)
        return True

    def _unplace(self, rec: JobRecord, ps: list[Placement]) -> None:
        for p, req in zip(ps, rec.spec.members(), strict=False):
            self.state.release(p, req.cpu_milli, req.mem_mib)
        self._freed()

    # ------------------------------------------------------------------ preemption (preemption.py)
    def _victims(self, rec: JobRecord, now: float) -> list[JobRecord]:
        """Running jobs that may be taken from, most expendable first."""
        return preemption.victims(self, rec, now)

    def _may_take(self, rec: JobRecord, r: JobRecord, eff: float) -> bool:
        return preemption.may_take(self, rec, r, eff)

    def _try_with_victims(self, rec: JobRecord, now: float) -> bool:
        return preemption.try_with_victims(self, rec, now)

    # ------------------------------------------------------------------ ends and interrupts
    def _close_usage(self, rec: JobRecord, now: float) -> None:
        if rec.started is None:
            return
        uuids = tuple(self.state.uuids[p.node][g] for p in rec.placements for g in p.gpus)
        self.usage.append(Usage(rec.spec.name, rec.spec.user, rec.spec.team, rec.gpu_type, rec.spec.gpu_count,
                                rec.started, now, uuids))

    def _stop(self, rec: JobRecord, now: float) -> None:
        self._close_usage(rec, now)
        self._unplace(rec, rec.placements)
        rec.placements = []

    def complete(self, name: str, now: float) -> None:
        rec = self._get(name)
        if rec.status not in HOLDING:
            raise InputError(f"job {name} is {rec.status}, not running")
        self._now = now
        self._stop(rec, now)
        rec.done_s = rec.spec.duration_s
        rec.finished = now
        rec.exit_code = 0
        self._transition(rec, SUCCEEDED, None, now)
        self._save()

    def mark(self, name: str, state: str, now: float, reason: str | None = None) -> None:
        """The executor moved a placed job on: ``starting`` or ``running``."""
        rec = self._get(name)
        if state not in (STARTING, RUNNING) or rec.status not in HOLDING:
            raise InputError(f"job {name} is {rec.status}; it cannot become {state}")
        if rec.status != state:
            self._transition(rec, state, reason, now)
            self._save()

    def finish(self, name: str, now: float, exit_code: int, reason: str | None = None) -> None:
        """A run ended with ``exit_code``: succeeded (0), retried after its backoff, or failed for good."""
        rec = self._get(name)
        if rec.status not in HOLDING:
            raise InputError(f"job {name} is {rec.status}, not running")
        if exit_code == 0 and reason is None:
            self.complete(name, now)
            return
        self._now = now
        rec.exit_code = exit_code
        why = reason or f"exited with code {exit_code}"
        self._stop(rec, now)
        rec.started = None
        if rec.failures < rec.spec.retries:
            rec.not_before = now + rec.spec.retry_backoff_s * (2 ** rec.failures)
            rec.failures += 1
            rec.restarts += 1
            self._transition(rec, FAILED, why, now)
            self._transition(rec, REQUEUED, f"retry {rec.failures} of {rec.spec.retries} after: {why}", now)
        else:
            rec.failures += 1
            rec.finished = now
            self._transition(rec, FAILED, why, now)
        self._save()

    def _requeue(self, rec: JobRecord, now: float, reason: str) -> None:
        """Stop a running job and queue it again from its last checkpoint; count the GPU-hours lost."""
        ran = max(0.0, now - (rec.started if rec.started is not None else now))
        if rec.spec.checkpointing:
            saved = (ran // rec.spec.checkpoint_interval_s) * rec.spec.checkpoint_interval_s
        else:
            saved = 0.0
        lost = rec.spec.gpu_count * (ran - saved) / 3600.0
        self._stop(rec, now)
        rec.done_s = min(rec.spec.duration_s, rec.done_s + saved)
        rec.lost_gpu_hours += lost
        rec.restarts += 1
        rec.started = None
        rec.ahead = rec.ahead or reason not in ("preemption", "reclaim")
        self._transition(rec, INTERRUPTED, {"interrupt": "GPU fault or drain"}.get(reason, reason), now)
        self._transition(rec, REQUEUED, f"requeued after {reason}", now)
        self.counters["gpu_hours_lost"] += lost
        if reason == "preemption":
            rec.preemptions += 1
            self.counters["preemptions"] += 1
        elif reason == "reclaim":
            rec.preemptions += 1
            self.counters["reclaims"] += 1
        else:
            self.counters["interruptions"] += 1

    def jobs_on(self, node: int, gpu: int | None = None) -> list[JobRecord]:
        return [r for r in self.jobs.values() if r.status in HOLDING and any(
            p.node == node and (gpu is None or gpu in p.gpus) for p in r.placements)]

    def interrupt_gpu(self, uuid: str, now: float, health: Health = Health.LOST,
                      only_preemptible: bool = False) -> list[str]:
        """A GPU failed (or is drained): requeue its jobs (a drain: only its preemptible ones) from their last
        checkpoint. Returns their names."""
        i, j = self.state.locate(uuid)
        self._now = now
        hit = [r for r in self.jobs_on(i, j) if r.spec.preemptible or not only_preemptible]
        for rec in hit:
            self._requeue(rec, now, reason="interrupt")
        self.state.set_gpu_health(uuid, health)
        self._save()
        return [r.spec.name for r in hit]

    def interrupt(self, name: str, now: float, reason: str = "interrupt") -> None:
        """One job's run was lost (its worker died, its node failed): requeue it from its last checkpoint."""
        rec = self._get(name)
        if rec.status in HOLDING:
            self._now = now
            self._requeue(rec, now, reason=reason)
            self._save()

    def drain_node(self, node: str, now: float, health: Health = Health.DRAINING,
                   only_preemptible: bool = True) -> list[str]:
        """Stop the node's preemptible jobs (they resume from their checkpoint elsewhere), let the others
        finish, and take no new work there (``only_preemptible=False``, e.g. a spot interruption notice: stop
        every job there). Returns the stopped jobs' names."""
        i = self.state.node_index(node)
        self._now = now
        hit = [r for r in self.jobs_on(i) if r.spec.preemptible or not only_preemptible]
        for rec in hit:
            self._requeue(rec, now, reason="interrupt")
        self.state.set_node_health(i, health)
        self._save()
        return [r.spec.name for r in hit]

    def finish_due(self, now: float) -> list[str]:
        """Complete running jobs whose remaining work has elapsed (for simulations)."""
        due = [r for r in self.jobs.values()
               if r.status in HOLDING and r.started is not None and r.started + r.remaining_s <= now + 1e-9]
        with self.batch():
            for r in due:
                self.complete(r.spec.name, r.started + r.remaining_s if r.started is not None else now)
        return [r.spec.name for r in due]

    # ------------------------------------------------------------------ persistence (queue_persist.py)
    def to_dict(self) -> dict[str, Any]:
        return queue_persist.to_dict(self)

    def pending_changes(self) -> QueueChanges:
        """Take what changed since the last write (the write-through store's batch)."""
        return queue_persist.take_changes(self)

    def rewrite_all(self) -> None:
        """Write the whole queue at the next save (an import into an empty store)."""
        queue_persist.rewrite_all(self)

    def _save(self) -> None:
        if not self._batch_depth:
            queue_persist.save(self)

    @classmethod
    def load(cls, path: str | Path, state: ClusterState, policy: Policy, **kwargs: Any) -> JobQueue:
        """Restore a queue saved at ``path`` onto a fresh cluster state (running jobs keep their GPUs)."""
        p = Path(path)
        data = queue_persist.read_json(p)
        q = cls(state, policy, path=p, **kwargs) if data is None else cls.from_data(data, state, policy, path=p,
                                                                                      **kwargs)
        return q

    @classmethod
    def open(cls, store: QueueStore, state: ClusterState, policy: Policy, **kwargs: Any) -> JobQueue:
        """The queue kept in ``store`` (empty when nothing is stored), writing every change through to it."""
        data = store.load()
        if data is None:
            return cls(state, policy, store=store, **kwargs)
        return cls.from_data(data, state, policy, store=store, **kwargs)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], state: ClusterState, policy: Policy, **kwargs: Any) -> JobQueue:
        """A queue from :meth:`to_dict`'s shape (running jobs keep their GPUs, overrides are re-applied)."""
        quotas = {t: TeamQuota(q["guaranteed"], q["maximum"]) for t, q in data.get("quotas", {}).items()}
        q = cls(state, policy, quotas=kwargs.pop("quotas", None) or quotas, **kwargs)
        queue_persist.restore(q, data)
        return q

    # ------------------------------------------------------------------ views
    def summary(self) -> dict[str, Any]:
        by: dict[str, int] = {}
        for r in self.jobs.values():
            by[r.status] = by.get(r.status, 0) + 1
        return {"jobs": by, **self.counters, "allocation_ratio": round(self.state.allocation_ratio(), 4)}


def gpu_units(rec: JobRecord) -> float:
    """GPUs a job holds, fractional shares as their thousandths (helper for reports)."""
    return sum(len(p.gpus) * p.milli for p in rec.placements) / FULL


__all__ = ["CANCELLED", "DONE", "FAILED", "FINAL", "HOLDING", "INTERRUPTED", "PENDING", "PLACED", "REQUEUED",
           "RUNNING", "STARTING", "STATES", "SUCCEEDED", "WAITING", "JobQueue", "JobRecord", "PriorityClass", "QueueChanges",
           "QueueStore", "TeamQuota", "Usage"]
