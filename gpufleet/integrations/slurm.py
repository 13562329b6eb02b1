"""Slurm client: nodes and jobs from ``sinfo --json`` / ``squeue --json``, drain / resume / submit / cancel.

Every call runs a Slurm client binary with a timeout (Slurm clients retry for minutes when the controller
is down); a failure, a timeout or a missing binary becomes :class:`~exporter.errors.BackendUnavailable`
carrying Slurm's own message. Parsing accepts the 22.05 JSON (plain numbers and strings) and the 23.x+
shapes (``{"set":..., "number":...}`` numbers, list-valued ``job_state``, ``gres/gpu`` TRES names).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpufleet.exporter.errors import BackendUnavailable, InputError
from gpufleet.integrations.remediation import REASON_PREFIX, ManagedNode

# one GRES entry with its index list: gpu:2(IDX:0-1)  gpu:a100:2(IDX:0,2-3)  gpu(IDX:0)
_GRES_IDX = re.compile(r"(?P<name>[a-z_]+)(?::(?P<type>[^:(,]+?))?(?::(?P<count>\d+))?\(IDX:(?P<idx>[^)]*)\)")
# one GRES count (inventory / request): gpu:8  gpu:a100:8(S:0-1)  gres:gpu:2  gres/gpu:2  gres/gpu=2
_GRES_COUNT = re.compile(r"(?:gres[:/])?gpu(?::(?P<type>[A-Za-z][^:,(=]*))?[:=](?P<count>\d+)")


def _num(v: Any, default: int = 0) -> int:
    """A number from 22.05 (plain) or 23.x+ (``{"set": bool, "infinite": bool, "number": n}``) JSON."""
    if isinstance(v, Mapping):
        if not v.get("set", True) or v.get("infinite"):
            return default
        v = v.get("number", default)
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _first_state(v: Any) -> str:
    if isinstance(v, list):
        return str(v[0]).upper() if v else ""
    return str(v or "").upper()


def expand_hostlist(expr: str) -> list[str]:
    """Expand a Slurm host list (``gpu[01-03,7],login1``) into names, like ``scontrol show hostnames``."""
    out: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", expr or ""):
        m = re.fullmatch(r"(?P<pre>[^\[]*)\[(?P<rng>[^\]]*)\](?P<post>.*)", part)
        if not m:
            out.append(part)
            continue
        for piece in m.group("rng").split(","):
            lo, _, hi = piece.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise InputError(f"bad Slurm host list {expr!r}")
            width = len(lo)
            for k in range(int(lo), int(hi or lo) + 1):
                out.extend(expand_hostlist(f"{m.group('pre')}{k:0{width}d}{m.group('post')}"))
    return out


def parse_indices(text: str) -> tuple[int, ...]:
    """``0-1,4`` → (0, 1, 4)."""
    idx: list[int] = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece or piece.upper() == "N/A":
            continue
        lo, _, hi = piece.partition("-")
        idx.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(idx)


def gpu_indices(gres_detail: str) -> tuple[int, ...]:
    """GPU indices out of one ``gres_detail`` / ``GresUsed`` entry (other GRES names are ignored)."""
    idx: list[int] = []
    for m in _GRES_IDX.finditer(gres_detail or ""):
        if m.group("name") == "gpu":
            idx.extend(parse_indices(m.group("idx")))
    return tuple(idx)


def gpu_count(tres: str) -> tuple[int, str]:
    """GPUs (and their type, "" when untyped) in a GRES / TRES string (``gpu:a100:8``, ``gres/gpu=2``)."""
    total, kind = 0, ""
    for m in _GRES_COUNT.finditer(tres or ""):
        total += int(m.group("count"))
        kind = kind or (m.group("type") or "")
    return total, kind


def count_array_tasks(spec: str) -> int:
    """Tasks in a job-array index spec (``8-199``, ``1,3,5-7``, ``0-15:2``, ``0-99%10``); 1 when empty."""
    spec = (spec or "").split("%")[0].strip()
    if not spec or spec.upper() == "N/A":
        return 1
    n = 0
    for piece in spec.split(","):
        rng, _, step = piece.partition(":")
        lo, _, hi = rng.partition("-")
        try:
            n += len(range(int(lo), int(hi or lo) + 1, int(step or 1)))
        except ValueError:
            n += 1
    return max(1, n)


@dataclass(frozen=True, slots=True)
class SlurmNode:
    name: str
    state: str
    """Base state in upper case: IDLE, MIXED, ALLOCATED, DOWN, ..."""
    flags: tuple[str, ...]
    gpus: int
    gpu_type: str
    gpus_used: int
    cpus: int
    memory_mib: int
    partitions: tuple[str, ...]
    reason: str = ""

    @property
    def drained(self) -> bool:
        """Draining or drained: Slurm starts no new job here."""
        return "DRAIN" in self.flags or "DRAIN" in self.state

    @property
    def schedulable(self) -> bool:
        return not self.drained and self.state not in ("DOWN", "FUTURE", "UNKNOWN") and not (
            {"NOT_RESPONDING", "POWERED_DOWN", "POWER_DOWN", "MAINTENANCE", "RESERVED"} & set(self.flags))


GPUFLEET_COMMENT = "gpufleet:"
"""The ``--comment`` prefix of the jobs gpufleet's Slurm executor submits."""


@dataclass(frozen=True, slots=True)
class SlurmJob:
    job_id: str
    name: str
    user: str
    partition: str
    state: str
    reason: str
    """Slurm's reason code (``Resources``, ``Priority``, ``None``...)."""
    description: str
    """Slurm's longer explanation where it gives one (e.g. why the required nodes are unavailable)."""
    nodes: tuple[str, ...]
    node_count: int
    gpus: int
    """GPUs the job asks for in all."""
    gpu_type: str = ""
    gpu_indices: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Per node, the GPU indices (Slurm's GRES index) the job holds."""
    submit_time: float = 0.0
    start_time: float = 0.0
    tasks: int = 1
    """Array tasks this record stands for (squeue shows a pending array's tasks as one record)."""
    comment: str = ""
    """The job's ``--comment`` (gpufleet's Slurm executor marks its own jobs ``gpufleet:<job id>:<attempt>``)."""

    @property
    def from_gpufleet(self) -> bool:
        """Submitted by gpufleet's own Slurm executor (already in gpufleet's queue: not outside demand)."""
        return self.comment.startswith(GPUFLEET_COMMENT)

    @property
    def pending(self) -> bool:
        return self.state == "PENDING"

    @property
    def running(self) -> bool:
        return self.state in ("RUNNING", "COMPLETING", "SUSPENDED")


def parse_node(d: Mapping[str, Any]) -> SlurmNode:
    state = str(d.get("state") or "")
    flags = [str(f).upper() for f in d.get("state_flags") or []]
    if isinstance(d.get("state"), list):  # 23.x+: ["IDLE", "DRAIN"]
        parts = [str(s).upper() for s in d["state"]]
        state, flags = (parts[0] if parts else ""), [*parts[1:], *flags]
    gpus, kind = gpu_count(str(d.get("gres") or ""))
    used_text = str(d.get("gres_used") or "")
    used_idx = gpu_indices(used_text)
    used = len(used_idx) if used_idx else gpu_count(used_text)[0]
    return SlurmNode(name=str(d.get("name") or d.get("hostname")), state=state.upper(), flags=tuple(flags),
                     gpus=gpus, gpu_type=kind, gpus_used=used, cpus=_num(d.get("cpus")),
                     memory_mib=_num(d.get("real_memory")), partitions=tuple(d.get("partitions") or ()),
                     reason=str(d.get("reason") or ""))


def parse_job(d: Mapping[str, Any]) -> SlurmJob:
    node_count = max(1, _num(d.get("node_count"), 1))
    per_job, kind = gpu_count(str(d.get("tres_per_job") or ""))
    per_node, kind2 = gpu_count(str(d.get("tres_per_node") or ""))
    per_task, kind3 = gpu_count(str(d.get("tres_per_task") or ""))
    if per_job:
        total = per_job
    elif per_node:
        total = per_node * node_count
    elif per_task:
        total = per_task * max(1, _num(d.get("tasks"), 1))
    else:  # 23.x+ puts the request in tres_req_str as gres/gpu=N
        total, kind = gpu_count(str(d.get("tres_req_str") or ""))
    nodes_expr = str(d.get("nodes") or "")
    res = d.get("job_resources") or {}
    alloc = res.get("allocated_nodes") if isinstance(res, Mapping) else None
    names = [str(a.get("nodename")) for a in alloc if isinstance(a, Mapping) and a.get("nodename")] if (
        isinstance(alloc, list)) else []
    names = names or expand_hostlist(nodes_expr)
    detail = list(d.get("gres_detail") or [])
    indices = {n: gpu_indices(str(g)) for n, g in zip(names, detail, strict=False)}
    return SlurmJob(job_id=str(_num(d.get("job_id"))), name=str(d.get("name") or ""),
                    user=str(d.get("user_name") or d.get("user_id") or ""), partition=str(d.get("partition") or ""),
                    state=_first_state(d.get("job_state")), reason=str(d.get("state_reason") or ""),
                    description=str(d.get("state_description") or ""), nodes=tuple(names),
                    node_count=node_count, gpus=total, gpu_type=kind or kind2 or kind3,
                    gpu_indices={k: v for k, v in indices.items() if v},
                    submit_time=float(_num(d.get("submit_time"))), start_time=float(_num(d.get("start_time"))),
                    tasks=count_array_tasks(str(d.get("array_task_string") or "")),
                    comment=str(d.get("comment") or ""))


def _errors(doc: Mapping[str, Any]) -> str:
    errs = doc.get("errors") or []
    return "; ".join(str(e.get("description") or e.get("error") or e) if isinstance(e, Mapping) else str(e)
                     for e in errs)


class SlurmClient:
    """Runs Slurm's client commands (``sinfo``, ``squeue``, ``scontrol``, ``sbatch``, ``scancel``).

    ``conf`` sets ``SLURM_CONF`` for the commands (default: the environment's, then /etc/slurm);
    ``bin_dir`` where the binaries are (default: ``PATH``); ``timeout`` seconds per call.
    """

    def __init__(self, *, conf: str | None = None, bin_dir: str | None = None, timeout: float = 10.0) -> None:
        if timeout <= 0:
            raise InputError("Slurm timeout must be positive")
        self.conf = conf
        self.bin_dir = bin_dir
        self.timeout = timeout

    def run(self, args: Sequence[str]) -> str:
        """Run one Slurm command; its stdout, or BackendUnavailable with Slurm's message."""
        exe = os.path.join(self.bin_dir, args[0]) if self.bin_dir else args[0]
        env = {**os.environ, **({"SLURM_CONF": self.conf} if self.conf else {})}
        try:
            proc = subprocess.run([exe, *args[1:]], capture_output=True, text=True, timeout=self.timeout,
                                  env=env, check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BackendUnavailable(f"slurm: {args[0]} gave no answer within {self.timeout:g} s "
                                     "(is slurmctld running?)") from None
        except OSError as exc:
            raise BackendUnavailable(f"slurm: cannot run {args[0]}: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            msg = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}")
            raise BackendUnavailable(f"slurm: {msg}")
        return proc.stdout

    def _json(self, args: Sequence[str]) -> dict[str, Any]:
        out = self.run(args)
        try:
            doc = json.loads(out)
        except json.JSONDecodeError as exc:
            raise BackendUnavailable(f"slurm: {args[0]} --json gave unreadable output: {exc}") from None
        if not isinstance(doc, dict):
            raise BackendUnavailable(f"slurm: {args[0]} --json gave {type(doc).__name__}, not an object")
        if doc.get("errors") and not (doc.get("nodes") or doc.get("jobs")):
            raise BackendUnavailable(f"slurm: {_errors(doc)}")
        return doc

    # ------------------------------------------------------------------ read
    def nodes(self) -> list[SlurmNode]:
        """Every node once (``sinfo --json`` lists a node once per partition in some versions)."""
        doc = self._json(["sinfo", "--json"])
        seen: dict[str, SlurmNode] = {}
        for d in doc.get("nodes") or []:
            n = parse_node(d)
            if n.name in seen:
                parts = tuple(dict.fromkeys((*seen[n.name].partitions, *n.partitions)))
                n = SlurmNode(**{**{f: getattr(n, f) for f in SlurmNode.__slots__}, "partitions": parts})
            seen[n.name] = n
        return list(seen.values())

    def jobs(self, *, states: str | None = None) -> list[SlurmJob]:
        """Jobs in the queue (pending, running, completing...); ``states`` filters like ``squeue -t``."""
        args = ["squeue", "--json"] + (["--states", states] if states else [])
        return [parse_job(d) for d in self._json(args).get("jobs") or []]

    def node_gres_used(self, node: str) -> tuple[int, ...]:
        """GPU indices in use on a node from ``scontrol -d show node`` (typed GRES print ``IDX``)."""
        text = self.run(["scontrol", "-d", "-o", "show", "node", node])
        m = re.search(r"GresUsed=(\S+)", text)
        return gpu_indices(m.group(1)) if m else ()

    # ------------------------------------------------------------------ act
    def drain(self, node: str, reason: str) -> None:
        """Stop new work on the node (running jobs finish); ``reason`` shows in ``sinfo -R`` and ``squeue``."""
        if not reason.strip():
            raise InputError("Slurm needs a reason to drain a node")
        self.run(["scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={reason}"])

    def resume(self, node: str) -> None:
        self.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"])

    def submit(self, command: str, *, gpus_per_node: int = 0, nodes: int = 1, name: str = "gpufleet",
               partition: str | None = None, output: str | None = None,
               extra: Sequence[str] = ()) -> str:
        """``sbatch --wrap``; the new job id. A request Slurm refuses raises with Slurm's message."""
        args = ["sbatch", "--parsable", f"--job-name={name}", f"--nodes={nodes}", "--wrap", command]
        if gpus_per_node:
            args.insert(1, f"--gres=gpu:{gpus_per_node}")
        if partition:
            args.insert(1, f"--partition={partition}")
        if output:
            args.insert(1, f"--output={output}")
        args[1:1] = list(extra)
        out = self.run(args).strip()
        return out.split(";")[0]

    def cancel(self, job_id: str | None = None, *, user: str | None = None) -> None:
        args = ["scancel"] + ([f"--user={user}"] if user else []) + ([job_id] if job_id else [])
        if len(args) == 1:
            raise InputError("scancel needs a job id or a user")
        self.run(args)


class SlurmNodeManager:
    """The :class:`~gpufleet.integrations.remediation.NodeManager` for Slurm: drain with gpufleet's reason,
    resume. A node counts as gpufleet's when its drain reason starts with ``gpufleet:``.

    ``uuid_by_index[node][index]`` names the GPUs on each node (default ``<node>/gpu<index>``).
    """

    name = "slurm"

    def __init__(self, client: SlurmClient, uuid_by_index: Mapping[str, Mapping[int, str]] | None = None) -> None:
        self.client = client
        self.uuid_by_index = uuid_by_index or {}

    def managed_nodes(self) -> list[ManagedNode]:
        out = []
        for n in self.client.nodes():
            umap = self.uuid_by_index.get(n.name, {})
            uuids = tuple(umap.get(i, f"{n.name}/gpu{i}") for i in range(n.gpus))
            held = n.drained and n.reason.startswith(REASON_PREFIX)
            out.append(ManagedNode(n.name, held=held, unavailable=not n.schedulable, uuids=uuids))
        return out

    def hold(self, node: str, reason: str, risk: float, horizon: str) -> None:
        self.client.drain(node, reason)

    def release(self, node: str) -> None:
        self.client.resume(node)
