"""Job specifications and their validation at submission.

A job asks for GPUs (a whole count, or a fraction of one GPU in thousandths), GPU memory per GPU, allowed
GPU types, a priority class, gang scheduling (all-or-nothing, possibly across nodes), preemptibility,
checkpointing with an interval, dependencies on other jobs, an estimated duration, a user and a team.
It also names what to run: ``command`` (an argv list; with ``image`` for the Kubernetes executor), ``env``,
``workdir``, a task type (training, inference, rendering, batch), a maximum runtime, retries with backoff and
what a failed dependency does to it (``on_failure``: ``block`` or ``continue``). ``duration_s`` is only used
by the simulated executor (the twin's clock).

:func:`validate_batch` rejects, with the reason, a job that asks for more GPUs than any gang could ever get,
an unknown GPU type, a negative size, a dependency on a job that does not exist, or a dependency cycle
(the cycle is named).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gpufleet.allocator.policies.base import Request
from gpufleet.allocator.state import FULL, ClusterState
from gpufleet.exporter.errors import Conflict, InputError


class PriorityClass(enum.IntEnum):
    """Higher runs first; preemption only takes from a strictly lower class."""

    BATCH = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, value: str | int | PriorityClass) -> PriorityClass:
        if isinstance(value, PriorityClass):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.upper()]
        except KeyError:
            raise InputError(f"unknown priority class {value!r}; use one of "
                             f"{', '.join(c.name.lower() for c in cls)}") from None


TASK_TYPES = ("training", "inference", "rendering", "batch")
ON_FAILURE = ("block", "continue")
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def id_problem(name: str) -> str | None:
    """Why ``name`` cannot be a job id (it must be URL-safe: letters, digits, ``.``, ``_``, ``-``), or None."""
    if not isinstance(name, str) or not _JOB_ID.match(name):
        return (f"job name {name!r} is not URL-safe: use 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit")
    return None


@dataclass
class JobSpec:
    name: str
    gpus: int = 1
    """Whole GPUs; 0 together with ``gpu_milli`` below 1000 asks for a share of one GPU."""
    gpu_milli: int = FULL
    """Thousandths of one GPU for a fractional request (``gpus`` 1 or 0); 1000 for whole GPUs."""
    gpu_memory_bytes: int = 0
    gpu_types: tuple[str, ...] = ()
    priority: PriorityClass = PriorityClass.NORMAL
    gang: bool = True
    gpus_per_node: int | None = None
    """For a gang over several nodes: GPUs per member (default: all on one node)."""
    preemptible: bool = False
    checkpointing: bool = False
    checkpoint_interval_s: float = 3600.0
    depends_on: tuple[str, ...] = ()
    duration_s: float = 3600.0
    user: str = "unknown"
    team: str = "default"
    cpu_milli: int = 0
    memory_mib: int = 0
    command: tuple[str, ...] = ()
    """What to run, as an argv list (empty: nothing to run, only for the simulated executor)."""
    image: str | None = None
    """Container image (Kubernetes executor)."""
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    task_type: str = "batch"
    max_runtime_s: float | None = None
    """Stop (and fail) the job after this many seconds of running."""
    retries: int = 0
    """How often a failed run is started again."""
    retry_backoff_s: float = 30.0
    """Wait before the first retry; doubled for each further one."""
    on_failure: str = "block"
    """What happens to this job when a dependency fails: ``block`` (stay blocked, with the reason) or
    ``continue`` (run anyway)."""

    @property
    def fractional(self) -> bool:
        return self.gpu_milli < FULL and self.gpus <= 1

    @property
    def gpu_count(self) -> float:
        """GPUs this job holds (a fraction counts as its share)."""
        return self.gpu_milli / FULL if self.fractional else float(self.gpus)

    def members(self) -> list[Request]:
        """One :class:`Request` per node this job needs (a multi-node gang has several)."""
        models = frozenset(self.gpu_types) or None
        if self.fractional:
            return [Request(self.cpu_milli, self.memory_mib, 1, self.gpu_milli, models, self.gpu_memory_bytes,
                            self.duration_s)]
        per = self.gpus_per_node or self.gpus
        out = []
        left = self.gpus
        while left > 0:
            n = min(per, left)
            out.append(Request(self.cpu_milli, self.memory_mib, n, FULL, models, self.gpu_memory_bytes,
                               self.duration_s))
            left -= n
        return out or [Request(self.cpu_milli, self.memory_mib, 0, FULL, models, 0, self.duration_s)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["priority"] = self.priority.name.lower()
        d["gpu_types"] = list(self.gpu_types)
        d["depends_on"] = list(self.depends_on)
        d["command"] = list(self.command)
        d["env"] = dict(self.env)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise InputError(f"job {d.get('name', '?')}: unknown field(s) {', '.join(sorted(unknown))}")
        if "name" not in d:
            raise InputError("a job needs a name")
        kw: dict[str, Any] = dict(d)
        kw["priority"] = PriorityClass.parse(kw.get("priority", "normal"))
        kw["gpu_types"] = tuple(kw.get("gpu_types", ()) or ())
        kw["depends_on"] = tuple(kw.get("depends_on", ()) or ())
        cmd = kw.get("command", ()) or ()
        if isinstance(cmd, str) or not all(isinstance(a, str) for a in cmd):
            raise InputError(f"job {d['name']}: command must be a list of strings (an argv), got {cmd!r}")
        kw["command"] = tuple(cmd)
        env = kw.get("env", {}) or {}
        if not isinstance(env, Mapping):
            raise InputError(f"job {d['name']}: env must be a mapping of names to strings")
        kw["env"] = {str(k): str(v) for k, v in env.items()}
        return cls(**kw)


@dataclass
class Rejection:
    job: str
    reason: str


@dataclass
class Limits:
    """What the cluster could ever give a job: GPU types present and the biggest gang per type."""

    types: set[str]
    gpus_by_type: dict[str, int]
    max_per_node_by_type: dict[str, int]
    gpu_memory_by_type: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, state: ClusterState) -> Limits:
        types = {m for m in state.models if m}
        total: dict[str, int] = {}
        per_node: dict[str, int] = {}
        mem: dict[str, float] = {}
        for i, mid in enumerate(state.model_id):
            m = state.models[mid]
            if not m:
                continue
            total[m] = total.get(m, 0) + int(state.gpu_count[i])
            per_node[m] = max(per_node.get(m, 0), int(state.gpu_count[i]))
            if state.gpu_mem[i] == state.gpu_mem[i]:
                mem[m] = max(mem.get(m, 0.0), float(state.gpu_mem[i]))
        return cls(types, total, per_node, mem)


def check_job(job: JobSpec, limits: Limits) -> str | None:
    """Every reason this job can never run (joined with "; "), or None."""
    why = job_problems(job, limits)
    return "; ".join(why) if why else None


def job_problems(job: JobSpec, limits: Limits) -> list[str]:
    """Every reason this job can never run (empty when it can)."""
    why: list[str] = []
    bad_id = id_problem(job.name)
    if bad_id:
        why.append(bad_id)
    if job.task_type not in TASK_TYPES:
        why.append(f"unknown task_type {job.task_type!r}; use one of {', '.join(TASK_TYPES)}")
    if job.on_failure not in ON_FAILURE:
        why.append(f"on_failure must be one of {', '.join(ON_FAILURE)}, got {job.on_failure!r}")
    if job.retries < 0 or job.retry_backoff_s < 0:
        why.append("retries and retry_backoff_s must not be negative")
    if job.max_runtime_s is not None and job.max_runtime_s <= 0:
        why.append("max_runtime_s must be positive")
    if job.image and not job.command:
        why.append("a job with an image needs a command")
    for fld in ("gpus", "gpu_milli", "gpu_memory_bytes", "cpu_milli", "memory_mib"):
        if getattr(job, fld) < 0:
            why.append(f"negative size: {fld}={getattr(job, fld)}")
    if job.duration_s <= 0 or job.checkpoint_interval_s <= 0:
        why.append("duration and checkpoint interval must be positive")
    if job.gpu_milli == 0 and job.gpus > 0:
        why.append("gpu_milli must be positive for a GPU job")
    if job.gpus > 1 and job.gpu_milli != FULL:
        why.append("a multi-GPU job takes whole GPUs (gpu_milli 1000)")
    unknown = [t for t in job.gpu_types if t not in limits.types]
    if unknown:
        why.append(f"unknown GPU type(s) {', '.join(unknown)}; the cluster has {', '.join(sorted(limits.types))}")
    types = list(job.gpu_types) or sorted(limits.types)
    if job.gpus > 0 and not job.fractional:
        per = job.gpus_per_node or job.gpus
        best_total = max((limits.gpus_by_type.get(t, 0) for t in types), default=0)
        best_node = max((limits.max_per_node_by_type.get(t, 0) for t in types), default=0)
        if job.gpus > best_total:
            why.append(f"asks for {job.gpus} GPUs; the largest pool of an allowed type has {best_total}")
        if per > best_node:
            why.append(f"asks for {per} GPUs on one node; no node of an allowed type has more than {best_node}"
                       + ("" if job.gpus_per_node else " (set gpus_per_node to spread the gang over nodes)"))
    if job.gpu_memory_bytes:
        mem = [limits.gpu_memory_by_type[t] for t in types if t in limits.gpu_memory_by_type]
        if mem and len(mem) == len(types) and job.gpu_memory_bytes > max(mem):
            why.append(f"asks for {job.gpu_memory_bytes} bytes of GPU memory; "
                       f"the largest allowed GPU has {int(max(mem))}")
    return why


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One dependency cycle as a list of job names (first name repeated at the end), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    for root in graph:
        if color[root] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        color[root] = GREY
        while stack:
            node, k = stack[-1]
            deps = [d for d in graph.get(node, ()) if d in graph]
            if k < len(deps):
                stack[-1] = (node, k + 1)
                nxt = deps[k]
                if color[nxt] == GREY:
                    return [*path[path.index(nxt):], nxt]
                if color[nxt] == WHITE:
                    color[nxt] = GREY
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                color[node] = BLACK
                stack.pop()
                path.pop()
    return None


def validate_batch(jobs: Iterable[JobSpec], limits: Limits, known: Iterable[str] = ()) -> tuple[
        list[JobSpec], list[Rejection]]:
    """Split a batch into accepted jobs and rejections with reasons.

    ``known`` are names already in the queue (dependencies may point at them). A job depending on a
    rejected or missing job is rejected too. A cycle among the batch raises :class:`Conflict` naming it.
    """
    jobs = list(jobs)
    known = set(known)
    rejected: list[Rejection] = []
    names: set[str] = set()
    ok: list[JobSpec] = []
    for j in jobs:
        if j.name in names or j.name in known:
            rejected.append(Rejection(j.name, "duplicate job name"))
            continue
        names.add(j.name)
        reason = check_job(j, limits)
        if reason:
            rejected.append(Rejection(j.name, reason))
        else:
            ok.append(j)
    cycle = find_cycle({j.name: list(j.depends_on) for j in ok})
    if cycle:
        raise Conflict(f"dependency cycle: {' -> '.join(cycle)}")
    changed = True
    while changed:
        changed = False
        good = {j.name for j in ok} | known
        keep = []
        for j in ok:
            missing = [d for d in j.depends_on if d not in good]
            if missing:
                rej = {r.job for r in rejected}
                why = [f"{d} (rejected)" if d in rej else d for d in missing]
                rejected.append(Rejection(j.name, f"depends on missing job(s) {', '.join(why)}"))
                changed = True
            else:
                keep.append(j)
        ok = keep
    return ok, rejected
