"""Cluster state for placement: nodes, their GPUs and what is free, as numpy arrays over nodes.

GPU capacity is counted in thousandths of a GPU ("milli"): a whole GPU is 1000, a MIG slice or a shared
fraction is less. Every array is indexed by node (``N``) and, for per-GPU arrays, by GPU slot (``G`` =
the most GPUs any node has; absent slots have ``gpu_present`` False and never hold free capacity).

The state also carries what placement policies may want beyond capacity: the GPU type and memory, NVLink
islands (GPUs of one island talk over NVLink; a gang inside one island is fastest), live utilisation and
memory use from the exporter's :class:`~exporter.schema.Snapshot`, the predicted failure risk per GPU, and
node / GPU health (``lost``, ``draining``, ``cordoned``, ``offline``: none of those accept new work).

Health has two sources kept apart: what is *observed* (a GPU is up or lost, from each snapshot) and what an
operator *overrides* (cordon, drain, offline, with a reason, who and when). The effective health the
policies read (``gpu_health`` / ``node_health``) is the worse of the two, so a snapshot that sees a cordoned
GPU up leaves it cordoned. Changed overrides are noted in ``override_changes`` for the persistence layer.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from gpufleet.exporter.errors import InputError, NotFound
from gpufleet.exporter.schema import Snapshot
from gpufleet.models.failure_base import Risk

FULL = 1000
"""One whole GPU in thousandths."""

# GPU memory per openb model code (bytes). G1/G2/G3 are undisclosed internal codes: unknown, left out.
KNOWN_GPU_MEMORY: dict[str, int] = {
    "P100": 16 << 30, "T4": 16 << 30, "V100M16": 16 << 30, "V100M32": 32 << 30, "A10": 24 << 30,
    "A100": 80 << 30, "H100": 80 << 30, "H200": 141 << 30, "L4": 24 << 30, "A30": 24 << 30,
}


class Health(enum.IntEnum):
    OK = 0
    DRAINING = 1
    CORDONED = 2
    LOST = 3
    OFFLINE = 4
    """Taken out of service by an operator (an override; observed health is only OK or LOST)."""


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's override of a GPU or node: its state, why, who set it and when."""

    health: Health
    reason: str = ""
    by: str = ""
    at: float = 0.0


@dataclass(slots=True)
class NodeSpec:
    """One node as an inventory describes it."""

    name: str
    cpu_milli: int
    memory_mib: int
    gpus: int = 0
    model: str = ""
    gpu_memory_bytes: int | None = None
    islands: Sequence[int] | None = None
    """NVLink island id of each GPU (default: all GPUs of the node in island 0)."""
    uuids: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one request goes: a node, the GPU slots on it, and thousandths taken on each slot."""

    node: int
    gpus: tuple[int, ...] = ()
    milli: int = 0


@dataclass
class ClusterState:
    """Mutable cluster state. Build it with :meth:`from_specs`, :meth:`from_openb` or :meth:`from_snapshots`."""

    names: list[str]
    models: list[str]
    model_id: np.ndarray
    cpu_cap: np.ndarray
    mem_cap: np.ndarray
    gpu_count: np.ndarray
    gpu_present: np.ndarray
    gpu_free: np.ndarray
    gpu_mem: np.ndarray
    island: np.ndarray
    uuids: list[list[str]]
    cpu_free: np.ndarray = field(init=False)
    mem_free: np.ndarray = field(init=False)
    node_health: np.ndarray = field(init=False)
    gpu_health: np.ndarray = field(init=False)
    risk: np.ndarray = field(init=False)
    util: np.ndarray = field(init=False)
    mem_used: np.ndarray = field(init=False)
    max_free: np.ndarray = field(init=False)
    n_full: np.ndarray = field(init=False)
    tot_free: np.ndarray = field(init=False)
    version: np.ndarray = field(init=False)
    gpu_observed: np.ndarray = field(init=False)
    gpu_override: np.ndarray = field(init=False)
    node_override: np.ndarray = field(init=False)
    overrides: dict[tuple[str, str], Override] = field(init=False)
    """Operator overrides by (``"gpu"``, uuid) or (``"node"``, name); only non-OK ones are kept."""
    override_changes: set[tuple[str, str]] = field(init=False)
    """Keys of overrides changed since the persistence layer last took them (see :meth:`take_override_changes`)."""
    _uuid_index: dict[str, tuple[int, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n, g = self.gpu_free.shape
        self.cpu_free = self.cpu_cap.copy()
        self.mem_free = self.mem_cap.copy()
        self.node_health = np.zeros(n, dtype=np.int8)
        self.gpu_health = np.zeros((n, g), dtype=np.int8)
        self.risk = np.zeros((n, g), dtype=np.float64)
        self.risk_horizon_s = 86400.0  # ``risk`` is P(failure within this many seconds): see set_risk
        self.util = np.zeros((n, g), dtype=np.float64)
        self.mem_used = np.zeros((n, g), dtype=np.float64)
        self.max_free = np.zeros(n, dtype=np.int32)
        self.n_full = np.zeros(n, dtype=np.int32)
        self.tot_free = np.zeros(n, dtype=np.int32)
        self.version = np.zeros(n, dtype=np.int64)
        self.gpu_observed = np.zeros((n, g), dtype=np.int8)
        self.gpu_override = np.zeros((n, g), dtype=np.int8)
        self.node_override = np.zeros(n, dtype=np.int8)
        self.overrides = {}
        self.override_changes = set()
        self._uuid_index = {u: (i, j) for i, row in enumerate(self.uuids) for j, u in enumerate(row)}
        self.refresh()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_specs(cls, specs: Sequence[NodeSpec]) -> ClusterState:
        if not specs:
            raise InputError("the cluster has no nodes")
        gmax = max(1, max(s.gpus for s in specs))
        n = len(specs)
        models: list[str] = []
        model_id = np.zeros(n, dtype=np.int32)
        gpu_present = np.zeros((n, gmax), dtype=bool)
        island = np.zeros((n, gmax), dtype=np.int16)
        gpu_mem = np.full(n, np.nan)
        uuids: list[list[str]] = []
        for i, s in enumerate(specs):
            if s.gpus < 0 or s.cpu_milli < 0 or s.memory_mib < 0:
                raise InputError(f"node {s.name}: negative capacity")
            if s.model not in models:
                models.append(s.model)
            model_id[i] = models.index(s.model)
            gpu_present[i, : s.gpus] = True
            if s.islands is not None:
                island[i, : s.gpus] = np.asarray(s.islands[: s.gpus])
            mem = s.gpu_memory_bytes if s.gpu_memory_bytes is not None else KNOWN_GPU_MEMORY.get(s.model)
            if mem is not None:
                gpu_mem[i] = mem
            uuids.append(list(s.uuids) if s.uuids is not None else [f"{s.name}/gpu{j}" for j in range(s.gpus)])
        gpu_free = np.where(gpu_present, FULL, 0).astype(np.int32)
        return cls(names=[s.name for s in specs], models=models, model_id=model_id,
                   cpu_cap=np.array([s.cpu_milli for s in specs], dtype=np.int64),
                   mem_cap=np.array([s.memory_mib for s in specs], dtype=np.int64),
                   gpu_count=np.array([s.gpus for s in specs], dtype=np.int32),
                   gpu_present=gpu_present, gpu_free=gpu_free, gpu_mem=gpu_mem, island=island, uuids=uuids)

    @classmethod
    def from_openb(cls, path: str) -> ClusterState:
        """Read an openb node list (``sn,cpu_milli,memory_mib,gpu,model``)."""
        from gpufleet.allocator.openb import load_nodes

        return cls.from_specs(load_nodes(path))

    @classmethod
    def from_snapshots(cls, snapshots: Iterable[Snapshot], *, cpu_milli: int = 64000, memory_mib: int = 262144,
                       gpus_per_island: int | None = None) -> ClusterState:
        """One node per snapshot; GPUs (MIG instances excluded) from its devices, load from its samples."""
        snaps = list(snapshots)
        specs: list[NodeSpec] = []
        for snap in snaps:
            devs = sorted((d for d in snap.devices if not d.is_mig), key=lambda d: d.index)
            model = devs[0].model if devs else ""
            islands = [j // gpus_per_island for j in range(len(devs))] if gpus_per_island else None
            specs.append(NodeSpec(snap.node, cpu_milli, memory_mib, len(devs), model,
                                  devs[0].memory_total_bytes if devs else None, islands, [d.uuid for d in devs]))
        state = cls.from_specs(specs)
        for snap in snaps:
            state.update_from_snapshot(snap)
        return state

    # ------------------------------------------------------------------ growth
    def knows(self, uuid: str) -> bool:
        """Whether a GPU with this uuid has a slot in the cluster."""
        return uuid in self._uuid_index

    def add_nodes(self, specs: Sequence[NodeSpec]) -> list[str]:
        """Grow the cluster in place: a spec naming a new node appends that node; a spec naming a node
        already here appends the GPUs of ``spec.uuids`` it does not hold yet to that node's slots.

        What is there is kept: node indexes and GPU slots do not move (placements, allocations, health
        and overrides stay valid), and a wider GPU slot count pads every node with absent slots. A new node
        starts free, healthy and unscored. Returns the names of the nodes added or grown, in order.

        Adding GPUs to a node already here must fit its slot row unless new nodes come in the same call
        (policies that cache per-node arrays re-size when the node count changes): InputError otherwise."""
        new: list[NodeSpec] = []
        grown: dict[int, list[str]] = {}
        for s in specs:
            if s.gpus < 0 or s.cpu_milli < 0 or s.memory_mib < 0:
                raise InputError(f"node {s.name}: negative capacity")
            uuids = list(s.uuids) if s.uuids is not None else [f"{s.name}/gpu{j}" for j in range(s.gpus)]
            if s.name in self.names:
                i = self.names.index(s.name)
                fresh = [u for u in uuids if u not in self._uuid_index and u not in grown.get(i, [])]
                if fresh:
                    grown.setdefault(i, []).extend(fresh)
            elif all(s.name != o.name for o in new):
                new.append(NodeSpec(s.name, s.cpu_milli, s.memory_mib, len(uuids), s.model, s.gpu_memory_bytes,
                                    s.islands, uuids))
        if not new and not grown:
            return []
        n_old, g_old = self.gpu_free.shape
        need = max([int(self.gpu_count[i]) + len(u) for i, u in grown.items()] + [s.gpus for s in new] + [g_old])
        if need > g_old and not new:
            raise InputError(f"node {self.names[next(iter(grown))]}: {need} GPUs do not fit its {g_old} GPU slots "
                             "without a new node; restart the service to take them")
        g, n_new = need, len(new)

        def grid(a: np.ndarray, fill: float | bool = 0) -> np.ndarray:
            out = np.full((n_old + n_new, g), fill, dtype=a.dtype)
            out[:n_old, :g_old] = a
            return out

        def vec(a: np.ndarray, values: Sequence[float | int]) -> np.ndarray:
            return np.concatenate([a, np.asarray(values, dtype=a.dtype)])

        for s in new:
            if s.model not in self.models:
                self.models.append(s.model)
        self.gpu_present = grid(self.gpu_present, False)
        self.gpu_free = grid(self.gpu_free)
        self.island = grid(self.island)
        for name in ("gpu_health", "risk", "util", "mem_used", "gpu_observed", "gpu_override"):
            setattr(self, name, grid(getattr(self, name)))
        mem = [s.gpu_memory_bytes if s.gpu_memory_bytes is not None else KNOWN_GPU_MEMORY.get(s.model, np.nan)
               for s in new]
        self.model_id = vec(self.model_id, [self.models.index(s.model) for s in new])
        self.cpu_cap = vec(self.cpu_cap, [s.cpu_milli for s in new])
        self.mem_cap = vec(self.mem_cap, [s.memory_mib for s in new])
        self.cpu_free = vec(self.cpu_free, [s.cpu_milli for s in new])
        self.mem_free = vec(self.mem_free, [s.memory_mib for s in new])
        self.gpu_count = vec(self.gpu_count, [s.gpus for s in new])
        self.gpu_mem = vec(self.gpu_mem, mem)
        for name in ("node_health", "node_override", "max_free", "n_full", "tot_free", "version"):
            setattr(self, name, vec(getattr(self, name), [0] * n_new))
        for k, s in enumerate(new):
            i = n_old + k
            self.names.append(s.name)
            self.uuids.append(list(s.uuids or ()))
            self.gpu_present[i, : s.gpus] = True
            self.gpu_free[i, : s.gpus] = FULL
            if s.islands is not None:
                self.island[i, : s.gpus] = np.asarray(s.islands[: s.gpus])
        for i, fresh in grown.items():
            c = int(self.gpu_count[i])
            self.gpu_present[i, c: c + len(fresh)] = True
            self.gpu_free[i, c: c + len(fresh)] = FULL
            self.island[i, c: c + len(fresh)] = self.island[i, c - 1] if c else 0
            self.uuids[i].extend(fresh)
            self.gpu_count[i] = c + len(fresh)
        self._uuid_index = {u: (i, j) for i, row in enumerate(self.uuids) for j, u in enumerate(row)}
        touched = [*grown, *range(n_old, n_old + n_new)]
        for i in touched:
            self.refresh(i)
        return [self.names[i] for i in touched]

    def set_capacity(self, node: str | int, cpu_milli: int, memory_mib: int) -> None:
        """A node's CPU / memory capacity as the fleet now reports it; what is allocated stays allocated."""
        i = node if isinstance(node, int) else self.node_index(node)
        if cpu_milli < 0 or memory_mib < 0:
            raise InputError(f"node {self.names[i]}: negative capacity")
        self.cpu_free[i] += cpu_milli - self.cpu_cap[i]
        self.mem_free[i] += memory_mib - self.mem_cap[i]
        self.cpu_cap[i], self.mem_cap[i] = cpu_milli, memory_mib
        self.version[i] += 1

    # ------------------------------------------------------------------ live inputs
    def update_from_snapshot(self, snap: Snapshot) -> None:
        """Take live utilisation, memory use and up/lost state from one node's snapshot.

        Only the *observed* health changes: an operator's cordon, drain or offline holds across cycles."""
        for s in snap.samples:
            where = self._uuid_index.get(s.uuid)
            if where is None or s.labels:
                continue
            if s.field == "util_gpu":
                self.util[where] = s.value
            elif s.field == "fb_used":
                self.mem_used[where] = s.value
        for uuid, up in snap.up.items():
            where = self._uuid_index.get(uuid)
            if where is not None:
                self.set_observed(uuid, bool(up))

    def set_risk(self, risk: Mapping[str, Risk | float], default: float = 0.0) -> None:
        """Predicted failure risk per GPU uuid; GPUs not named get ``default``.

        Values are :class:`models.failure_base.Risk` (a probability with its horizon): ``risk`` then holds
        them over the first value's horizon (``risk_horizon_s``; others are converted). Plain floats are
        probabilities over the current ``risk_horizon_s``."""
        horizon = next((r.horizon_s for r in risk.values() if isinstance(r, Risk)), self.risk_horizon_s)
        self.risk[:] = Risk(default, self.risk_horizon_s).over(horizon).p
        self.risk_horizon_s = horizon
        for uuid, r in risk.items():
            where = self._uuid_index.get(uuid)
            if where is not None:
                self.risk[where] = r.over(horizon).p if isinstance(r, Risk) else float(r)
        self.risk[~self.gpu_present] = 0.0

    def locate(self, uuid: str) -> tuple[int, int]:
        try:
            return self._uuid_index[uuid]
        except KeyError:
            raise NotFound(f"no GPU with uuid {uuid}") from None

    def node_index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise NotFound(f"no node named {name}") from None

    def set_observed(self, uuid: str, up: bool) -> None:
        """What the telemetry sees: the GPU is up or lost (overrides are left alone)."""
        i, j = self.locate(uuid)
        val = int(Health.OK if up else Health.LOST)
        if self.gpu_observed[i, j] == val:
            return
        self.gpu_observed[i, j] = val
        self._effective_gpu(i, j)

    def set_gpu_override(self, uuid: str, health: Health, *, reason: str = "", by: str = "",
                         at: float = 0.0) -> None:
        """An operator's cordon / drain / offline of one GPU (``Health.OK`` lifts the override)."""
        i, j = self.locate(uuid)
        self.gpu_override[i, j] = int(health)
        self._note_override(("gpu", uuid), health, reason, by, at)
        self._effective_gpu(i, j)

    def set_node_override(self, node: str | int, health: Health, *, reason: str = "", by: str = "",
                          at: float = 0.0) -> None:
        """An operator's (or a cluster manager's) cordon / drain / offline of a node; OK lifts it."""
        i = node if isinstance(node, int) else self.node_index(node)
        self.node_override[i] = int(health)
        self._note_override(("node", self.names[i]), health, reason, by, at)
        self.node_health[i] = int(health)
        self.refresh(i)

    def _note_override(self, key: tuple[str, str], health: Health, reason: str, by: str, at: float) -> None:
        if health == Health.OK:
            if self.overrides.pop(key, None) is None:
                return
        else:
            self.overrides[key] = Override(Health(int(health)), reason, by, at)
        self.override_changes.add(key)

    def take_override_changes(self) -> list[tuple[tuple[str, str], Override | None]]:
        """Overrides changed since the last call: (key, override or None where it was lifted)."""
        out = [(k, self.overrides.get(k)) for k in sorted(self.override_changes)]
        self.override_changes.clear()
        return out

    def _effective_gpu(self, i: int, j: int) -> None:
        self.gpu_health[i, j] = max(int(self.gpu_observed[i, j]), int(self.gpu_override[i, j]))
        self.refresh(i)

    def set_gpu_health(self, uuid: str, health: Health) -> None:
        """``LOST`` is observed (the GPU comes back when the telemetry sees it up); any other health is an
        override (``OK`` lifts it)."""
        if health == Health.LOST:
            self.set_observed(uuid, False)
        else:
            self.set_gpu_override(uuid, health)

    def set_node_health(self, node: str | int, health: Health) -> None:
        self.set_node_override(node, health)

    # ------------------------------------------------------------------ bookkeeping
    @property
    def n_nodes(self) -> int:
        return len(self.names)

    @property
    def capacity_milli(self) -> int:
        return int(self.gpu_count.sum()) * FULL

    def usable_free(self, i: int) -> np.ndarray:
        """Free thousandths per GPU slot of node ``i`` that new work may use (0 on unhealthy GPUs)."""
        ok = self.gpu_present[i] & (self.gpu_health[i] == Health.OK) & (self.node_health[i] == Health.OK)
        return np.where(ok, self.gpu_free[i], 0)

    def refresh(self, i: int | None = None) -> None:
        """Recompute the per-node summaries (max free share, wholly free GPUs, total free) of one or all nodes."""
        if i is None:
            ok = self.gpu_present & (self.gpu_health == Health.OK) & (self.node_health[:, None] == Health.OK)
            usable = np.where(ok, self.gpu_free, 0)
            self.max_free[:] = usable.max(axis=1)
            self.n_full[:] = (usable == FULL).sum(axis=1)
            self.tot_free[:] = usable.sum(axis=1)
            self.version += 1
            return
        usable = self.usable_free(i)
        self.max_free[i] = usable.max()
        self.n_full[i] = int((usable == FULL).sum())
        self.tot_free[i] = int(usable.sum())
        self.version[i] += 1

    def schedulable(self) -> np.ndarray:
        return self.node_health == Health.OK

    def allocate(self, p: Placement, cpu_milli: int, mem_mib: int) -> None:
        i = p.node
        self.cpu_free[i] -= cpu_milli
        self.mem_free[i] -= mem_mib
        for j in p.gpus:
            self.gpu_free[i, j] -= p.milli
        if p.gpus:
            self.refresh(i)
        else:
            self.version[i] += 1

    def release(self, p: Placement, cpu_milli: int, mem_mib: int) -> None:
        i = p.node
        self.cpu_free[i] += cpu_milli
        self.mem_free[i] += mem_mib
        for j in p.gpus:
            self.gpu_free[i, j] += p.milli
        if p.gpus:
            self.refresh(i)
        else:
            self.version[i] += 1

    def allocated_milli(self) -> int:
        return int((np.where(self.gpu_present, FULL - self.gpu_free, 0)).sum())

    def allocation_ratio(self) -> float:
        cap = self.capacity_milli
        return self.allocated_milli() / cap if cap else 0.0

    def fragmentation_milli(self) -> int:
        """Free thousandths on GPUs that are partly used (a whole-GPU request cannot use them)."""
        part = (self.gpu_free > 0) & (self.gpu_free < FULL) & self.gpu_present
        return int(self.gpu_free[part].sum())

    def model_mask(self, allowed: Iterable[str] | None) -> np.ndarray | None:
        """Boolean per model id for the allowed GPU types (None: any type)."""
        if allowed is None:
            return None
        allowed = set(allowed)
        if not allowed:
            return None
        return np.array([m in allowed for m in self.models], dtype=bool)
