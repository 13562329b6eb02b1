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
Preempted jobs are requeued the same way. The queue writes its state to a JSON file after every change
(write to a temporary file, then rename) and :meth:`JobQueue.load` restores it, re-applying placements.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.allocator.jobs import JobSpec, Limits, PriorityClass, Rejection, validate_batch
from gpufleet.allocator.policies.base import Policy, Request
from gpufleet.allocator.state import FULL, ClusterState, Health, Placement
from gpufleet.exporter.errors import InputError, NotFound

PENDING, RUNNING, DONE, CANCELLED = "pending", "running", "done", "cancelled"


@dataclass
class TeamQuota:
    guaranteed: dict[str, float] = field(default_factory=dict)
    maximum: dict[str, float] = field(default_factory=dict)

    def get(self, which: str, gpu_type: str) -> float:
        d = self.guaranteed if which == "guaranteed" else self.maximum
        return d.get(gpu_type, d.get("*", float("inf") if which == "maximum" else 0.0))


@dataclass
class JobRecord:
    spec: JobSpec
    seq: int
    submitted: float
    status: str = PENDING
    started: float | None = None
    finished: float | None = None
    first_start: float | None = None
    placements: list[Placement] = field(default_factory=list)
    gpu_type: str = ""
    done_s: float = 0.0
    """Work already saved (checkpointed) from earlier runs, in seconds."""
    restarts: int = 0
    preemptions: int = 0
    lost_gpu_hours: float = 0.0

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.spec.duration_s - self.done_s)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "seq": self.seq, "submitted": self.submitted, "status": self.status,
                "started": self.started, "finished": self.finished, "first_start": self.first_start,
                "placements": [[p.node, list(p.gpus), p.milli] for p in self.placements],
                "gpu_type": self.gpu_type, "done_s": self.done_s, "restarts": self.restarts,
                "preemptions": self.preemptions, "lost_gpu_hours": self.lost_gpu_hours}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobRecord:
        rec = cls(JobSpec.from_dict(d["spec"]), int(d["seq"]), float(d["submitted"]))
        for k in ("status", "started", "finished", "first_start", "gpu_type", "done_s", "restarts",
                  "preemptions", "lost_gpu_hours"):
            setattr(rec, k, d[k])
        rec.placements = [Placement(int(n), tuple(int(g) for g in gs), int(m)) for n, gs, m in d["placements"]]
        return rec


@dataclass
class Usage:
    """One stretch of GPU time a job held (closed when the job ends, is preempted or interrupted)."""

    job: str
    user: str
    team: str
    gpu_type: str
    gpus: float
    start: float
    end: float
    uuids: tuple[str, ...] = ()

    @property
    def gpu_hours(self) -> float:
        return self.gpus * max(0.0, self.end - self.start) / 3600.0


class JobQueue:
    def __init__(self, state: ClusterState, policy: Policy, *, quotas: Mapping[str, TeamQuota] | None = None,
                 aging_per_hour: float = 0.25, path: str | Path | None = None) -> None:
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
        self._pending: set[str] = set()
        self._observed = 0
        self.limits = Limits.of(state)

    # ------------------------------------------------------------------ submission
    def submit(self, jobs: Iterable[JobSpec], now: float) -> tuple[list[str], list[Rejection]]:
        """Validate a batch and queue the good jobs; returns (accepted names, rejections with reasons)."""
        ok, rejected = validate_batch(jobs, self.limits, known=self.jobs.keys())
        for j in ok:
            self._seq += 1
            self.jobs[j.name] = JobRecord(j, self._seq, now)
            self._pending.add(j.name)
        observe = getattr(self.policy, "observe", None)
        if ok and observe is not None:  # policies that learn the request mix see the submitted jobs
            self._seen.extend(m for j in ok for m in j.members())
            if len(self._seen) >= 1.25 * self._observed:  # re-learn when the history has grown by a quarter
                observe(self._seen)
                self._observed = len(self._seen)
        self._save()
        return [j.name for j in ok], rejected

    def cancel(self, name: str, now: float) -> None:
        rec = self._get(name)
        if rec.status == RUNNING:
            self._stop(rec, now)
        rec.status = CANCELLED
        rec.finished = now
        self._save()

    def _get(self, name: str) -> JobRecord:
        try:
            return self.jobs[name]
        except KeyError:
            raise NotFound(f"no job named {name}") from None

    # ------------------------------------------------------------------ scheduling
    def effective_priority(self, rec: JobRecord, now: float) -> float:
        return int(rec.spec.priority) + self.aging_per_hour * max(0.0, now - rec.submitted) / 3600.0

    def ready(self, now: float) -> list[JobRecord]:
        """Pending jobs whose dependencies have completed, best first."""
        out = []
        for name in self.pending_names():
            rec = self.jobs[name]
            deps = [self.jobs.get(d) for d in rec.spec.depends_on]
            if all(d is not None and d.status == DONE for d in deps):
                out.append(rec)
        out.sort(key=lambda r: (-self.effective_priority(r, now), r.seq))
        return out

    def pending_names(self) -> list[str]:
        """Names of pending jobs (an index kept beside ``jobs``; stale entries are dropped here)."""
        self._pending = {n for n in self._pending if self.jobs[n].status == PENDING}
        return sorted(self._pending, key=lambda n: self.jobs[n].seq)

    def schedule(self, now: float) -> list[str]:
        """Start every ready job that fits (preempting or reclaiming where allowed); returns started names."""
        started = []
        for rec in self.ready(now):
            if self._try_start(rec, now) or self._try_with_victims(rec, now):
                started.append(rec.spec.name)
        if started:
            self._save()
        return started

    def _place_all(self, rec: JobRecord) -> list[Placement] | None:
        """Place every member (allocating as it goes); roll back and return None if any member fails."""
        done: list[tuple[Placement, int, int]] = []
        for req in rec.spec.members():
            p = self.policy.place(self.state, req)
            if p is None:
                for q, c, m in reversed(done):
                    self.state.release(q, c, m)
                return None
            self.state.allocate(p, req.cpu_milli, req.mem_mib)
            done.append((p, req.cpu_milli, req.mem_mib))
        return [p for p, _, _ in done]

    def _type_of(self, placements: list[Placement]) -> str:
        return self.state.models[self.state.model_id[placements[0].node]] if placements else ""

    def team_usage(self, team: str, gpu_type: str) -> float:
        return sum(r.spec.gpu_count for r in self.jobs.values()
                   if r.status == RUNNING and r.spec.team == team and r.gpu_type == gpu_type)

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
        rec.status = RUNNING
        rec.started = now
        if rec.first_start is None:
            rec.first_start = now
        return True

    def _unplace(self, rec: JobRecord, ps: list[Placement]) -> None:
        for p, req in zip(ps, rec.spec.members(), strict=False):
            self.state.release(p, req.cpu_milli, req.mem_mib)

    def _victims(self, rec: JobRecord, now: float) -> list[JobRecord]:
        """Running jobs that may be taken from, most expendable first."""
        eff = self.effective_priority(rec, now)
        out = []
        q = self.quotas.get(rec.spec.team)
        for r in self.jobs.values():
            if r.status != RUNNING or not r.spec.preemptible or r is rec:
                continue
            lower = int(r.spec.priority) < int(eff)
            reclaim = False
            if q is not None:
                # the owner is within its guarantee and the victim's team borrows on that type
                within = self.team_usage(rec.spec.team, r.gpu_type) + rec.spec.gpu_count <= q.get(
                    "guaranteed", r.gpu_type) + 1e-9
                vq = self.quotas.get(r.spec.team)
                borrower = vq is not None and r.spec.team != rec.spec.team and (
                    self.team_usage(r.spec.team, r.gpu_type) > vq.get("guaranteed", r.gpu_type) + 1e-9)
                reclaim = within and borrower
            if lower or reclaim:
                out.append(r)
        out.sort(key=lambda r: (int(r.spec.priority), -(r.started or 0.0)))
        return out

    def _try_with_victims(self, rec: JobRecord, now: float) -> bool:
        victims = self._victims(rec, now)
        if not victims:
            return False
        taken: list[JobRecord] = []
        for v in victims:
            self._unplace(v, v.placements)
            taken.append(v)
            ps = self._place_all(rec)
            if ps is not None:
                gtype = self._type_of(ps)
                if self._quota_ok(rec, gtype):
                    self._unplace(rec, ps)  # placements are redone below once the victims are stopped
                    break
                self._unplace(rec, ps)
        else:
            for v in taken:  # nothing worked: put the victims back exactly where they were
                for p, req in zip(v.placements, v.spec.members(), strict=False):
                    self.state.allocate(p, req.cpu_milli, req.mem_mib)
            return False
        for v in taken:  # victims were already released from the state
            for p, req in zip(v.placements, v.spec.members(), strict=False):
                self.state.allocate(p, req.cpu_milli, req.mem_mib)
            borrower = rec.spec.team != v.spec.team and int(v.spec.priority) >= int(
                self.effective_priority(rec, now))
            self._requeue(v, now, reason="reclaim" if borrower else "preemption")
        return self._try_start(rec, now)

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
        if rec.status != RUNNING:
            raise InputError(f"job {name} is {rec.status}, not running")
        self._stop(rec, now)
        rec.done_s = rec.spec.duration_s
        rec.status = DONE
        rec.finished = now
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
        rec.status = PENDING
        rec.started = None
        self._pending.add(rec.spec.name)
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
        return [r for r in self.jobs.values() if r.status == RUNNING and any(
            p.node == node and (gpu is None or gpu in p.gpus) for p in r.placements)]

    def interrupt_gpu(self, uuid: str, now: float, health: Health = Health.LOST) -> list[str]:
        """A GPU failed (or is drained): requeue its jobs from their last checkpoint. Returns their names."""
        i, j = self.state.locate(uuid)
        hit = self.jobs_on(i, j)
        for rec in hit:
            self._requeue(rec, now, reason="interrupt")
        self.state.set_gpu_health(uuid, health)
        self._save()
        return [r.spec.name for r in hit]

    def drain_node(self, node: str, now: float, health: Health = Health.DRAINING) -> list[str]:
        i = self.state.node_index(node)
        hit = self.jobs_on(i)
        for rec in hit:
            self._requeue(rec, now, reason="interrupt")
        self.state.set_node_health(i, health)
        self._save()
        return [r.spec.name for r in hit]

    def finish_due(self, now: float) -> list[str]:
        """Complete running jobs whose remaining work has elapsed (for simulations)."""
        due = [r for r in self.jobs.values()
               if r.status == RUNNING and r.started is not None and r.started + r.remaining_s <= now + 1e-9]
        for r in due:
            self.complete(r.spec.name, r.started + r.remaining_s if r.started is not None else now)
        return [r.spec.name for r in due]

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "seq": self._seq, "counters": self.counters,
                "jobs": [r.to_dict() for r in self.jobs.values()],
                "usage": [u.__dict__ | {"uuids": list(u.uuids)} for u in self.usage],
                "quotas": {t: {"guaranteed": q.guaranteed, "maximum": q.maximum} for t, q in self.quotas.items()},
                "health": {"nodes": self.state.node_health.tolist(), "gpus": self.state.gpu_health.tolist()}}

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: str | Path, state: ClusterState, policy: Policy, **kwargs: Any) -> JobQueue:
        """Restore a queue saved at ``path`` onto a fresh cluster state (running jobs keep their GPUs)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(state, policy, path=p, **kwargs)
        except json.JSONDecodeError as exc:
            raise InputError(f"queue state is not valid JSON: {exc.msg}", path=str(p), line=exc.lineno) from None
        quotas = {t: TeamQuota(q["guaranteed"], q["maximum"]) for t, q in data.get("quotas", {}).items()}
        q = cls(state, policy, quotas=kwargs.pop("quotas", None) or quotas, path=p, **kwargs)
        q._seq = int(data["seq"])
        q.counters.update(data["counters"])
        health = data.get("health")
        if health and len(health["nodes"]) == state.n_nodes:
            state.node_health[:] = health["nodes"]
            state.gpu_health[:] = health["gpus"]
            state.refresh()
        for d in data["jobs"]:
            rec = JobRecord.from_dict(d)
            q.jobs[rec.spec.name] = rec
            if rec.status == PENDING:
                q._pending.add(rec.spec.name)
            if rec.status == RUNNING:
                for pl, req in zip(rec.placements, rec.spec.members(), strict=False):
                    state.allocate(pl, req.cpu_milli, req.mem_mib)
        q.usage = [Usage(**(u | {"uuids": tuple(u.get("uuids", ()))})) for u in data.get("usage", [])]
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


__all__ = ["CANCELLED", "DONE", "PENDING", "RUNNING", "JobQueue", "JobRecord", "PriorityClass", "TeamQuota",
           "Usage"]
