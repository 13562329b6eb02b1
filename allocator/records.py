"""What the job queue holds: a job's record (its spec and where it is in its lifecycle), team quotas, usage
stretches, and the batch of changes one queue operation hands to its store.

The lifecycle states are defined here; :mod:`gpufleet.allocator.queue` schedules, and
:mod:`gpufleet.allocator.queue_persist` writes and restores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpufleet.allocator.jobs import JobSpec
from gpufleet.allocator.state import Override, Placement

PENDING, PLACED, STARTING, RUNNING = "pending", "placed", "starting", "running"
SUCCEEDED, FAILED, CANCELLED, INTERRUPTED, REQUEUED = "succeeded", "failed", "cancelled", "interrupted", "requeued"
DONE = SUCCEEDED
STATES = (PENDING, PLACED, STARTING, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED, REQUEUED)
HOLDING = frozenset({PLACED, STARTING, RUNNING})
"""States in which a job holds its GPUs."""
WAITING = frozenset({PENDING, REQUEUED})
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
Listener = Callable[["JobRecord", str, str, str, float], None]


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
    reason: str | None = None
    """Why the job is in its state (a failure, a block, an interruption)."""
    exit_code: int | None = None
    failures: int = 0
    not_before: float = 0.0
    """A retry waits until then (backoff)."""
    ahead: bool = False
    """Requeued after a fault: goes first in its class."""
    run: dict[str, Any] | None = None
    """The executor's handle of the job's current run (the run table; see :mod:`gpufleet.jobs`)."""

    def __setattr__(self, name: str, value: Any) -> None:
        # every change is reported to the queue that holds this record (for its write-through store)
        watch: Callable[[JobRecord, str, Any, Any], None] | None = self.__dict__.get("_watch")
        if watch is None or name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        old = self.__dict__.get(name)
        object.__setattr__(self, name, value)
        watch(self, name, old, value)

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.spec.duration_s - self.done_s)

    def to_dict(self) -> dict[str, Any]:
        cached: tuple[JobSpec, dict[str, Any]] | None = self.__dict__.get("_spec_dict")
        if cached is None or cached[0] is not self.spec:  # built once per spec: every write of the row needs it
            cached = self._spec_dict = (self.spec, self.spec.to_dict())
        return {"spec": dict(cached[1]), "seq": self.seq, "submitted": self.submitted, "status": self.status,
                "started": self.started, "finished": self.finished, "first_start": self.first_start,
                "placements": [[p.node, list(p.gpus), p.milli] for p in self.placements],
                "gpu_type": self.gpu_type, "done_s": self.done_s, "restarts": self.restarts,
                "preemptions": self.preemptions, "lost_gpu_hours": self.lost_gpu_hours, "reason": self.reason,
                "exit_code": self.exit_code, "failures": self.failures, "not_before": self.not_before,
                "ahead": self.ahead, "run": self.run}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobRecord:
        rec = cls(JobSpec.from_dict(d["spec"]), int(d["seq"]), float(d["submitted"]))
        for k in ("status", "started", "finished", "first_start", "gpu_type", "done_s", "restarts",
                  "preemptions", "lost_gpu_hours"):
            setattr(rec, k, d[k])
        for k in ("reason", "exit_code", "failures", "not_before", "ahead", "run"):
            if k in d:
                setattr(rec, k, d[k])
        if rec.status == "done":  # state files written before the lifecycle had "succeeded"
            rec.status = SUCCEEDED
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


@dataclass
class QueueChanges:
    """What one queue operation changed, for a :class:`QueueStore` to write as one transaction."""

    jobs: list[JobRecord] = field(default_factory=list)
    transitions: list[tuple[str, str | None, str, float]] = field(default_factory=list)
    """(job, from state or None for a new job, to state, time)."""
    usage: list[Usage] = field(default_factory=list)
    overrides: list[tuple[tuple[str, str], Override | None]] = field(default_factory=list)
    seq: int = 0
    counters: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.jobs or self.transitions or self.usage or self.overrides)


class QueueStore(Protocol):
    """Where a queue writes its changes row by row (``gpufleet.state.StateStore`` is the database one)."""

    def write(self, changes: QueueChanges) -> None: ...

    def load(self) -> dict[str, Any] | None:
        """The stored queue in :meth:`gpufleet.allocator.queue.JobQueue.to_dict`'s shape (``None``: nothing stored yet)."""
        ...
