"""The one interface every placement policy implements, and the feasibility rules they share.

A policy gets the :class:`~allocator.state.ClusterState` and one :class:`Request` and returns a
:class:`~allocator.state.Placement` (node, GPU slots, thousandths per slot) or ``None`` when nothing fits.
It never changes the state: the caller allocates. Feasibility (the openb / FGD fit rules): enough free CPU
and memory, an allowed GPU type, enough GPU memory per GPU, and either one GPU with enough free share (a
sharing request, below 1000 thousandths) or enough wholly free GPUs. Node scoring is vectorised with numpy
over all nodes; the GPU choice inside the chosen node is made afterwards on one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from gpufleet.allocator.state import FULL, ClusterState, Placement


@dataclass(frozen=True, slots=True)
class Request:
    """What one task (or one member of a gang) asks of a node."""

    cpu_milli: int = 0
    mem_mib: int = 0
    num_gpu: int = 0
    gpu_milli: int = FULL
    """Thousandths per GPU: below 1000 only for a sharing request of one GPU."""
    models: frozenset[str] | None = None
    gpu_mem_bytes: int = 0
    duration_s: float | None = None

    @property
    def sharing(self) -> bool:
        return self.num_gpu == 1 and 0 < self.gpu_milli < FULL

    @property
    def gpu_request_milli(self) -> int:
        return self.num_gpu * self.gpu_milli if self.num_gpu else 0


@runtime_checkable
class Policy(Protocol):
    """Choose a node and GPUs for a request, or None when nothing fits.

    Whether something fits (None or not) depends on the request's resources and the cluster's free
    capacity only, never on ``duration_s`` (which may weigh the choice): the queue relies on it to try a
    resource shape once per scheduling pass on a full cluster."""

    name: str

    def place(self, state: ClusterState, req: Request) -> Placement | None: ...


_MODEL_CACHE: dict[tuple[int, frozenset[str]], np.ndarray] = {}


def feasible(state: ClusterState, req: Request) -> np.ndarray:
    """Boolean per node: the request fits there now."""
    ok = (state.cpu_free >= req.cpu_milli) & (state.mem_free >= req.mem_mib) & (state.node_health == 0)
    if req.num_gpu > 0:
        if req.sharing:
            ok &= state.max_free >= req.gpu_milli
        else:
            ok &= state.n_full >= req.num_gpu
        if req.gpu_mem_bytes:
            ok &= ~(state.gpu_mem < req.gpu_mem_bytes)  # unknown memory (NaN) is not ruled out
    if req.models:
        key = (id(state), req.models)
        mask = _MODEL_CACHE.get(key)
        if mask is None or len(mask) != len(state.models):
            mask = np.array([m in req.models for m in state.models], dtype=bool)
            _MODEL_CACHE[key] = mask
        ok &= mask[state.model_id]
    return ok


def choose_gpus(state: ClusterState, node: int, req: Request, prefer: str = "best") -> tuple[int, ...]:
    """GPU slots on ``node`` for the request.

    Sharing: the usable GPU with the least free share that still fits (``best``), the most (``worst``), or
    the lowest index (``first``). Whole GPUs: wholly free GPUs, preferring one NVLink island that holds them
    all (the smallest such island), else the lowest indices.
    """
    if req.num_gpu == 0:
        return ()
    free = state.usable_free(node)
    if req.sharing:
        cand = np.flatnonzero(free >= req.gpu_milli)
        if prefer == "first":
            return (int(cand[0]),)
        vals = free[cand]
        pick = cand[np.argmin(vals)] if prefer == "best" else cand[np.argmax(vals)]
        return (int(pick),)
    full = np.flatnonzero(free == FULL)
    if req.num_gpu > 1:
        islands = state.island[node, full]
        best: np.ndarray | None = None
        for isl in np.unique(islands):
            members = full[islands == isl]
            if len(members) >= req.num_gpu and (best is None or len(members) < len(best)):
                best = members
        if best is not None:
            return tuple(int(x) for x in best[: req.num_gpu])
    return tuple(int(x) for x in full[: req.num_gpu])


def gang_gpu_mask(state: ClusterState, nodes: np.ndarray, num_gpu: int) -> np.ndarray:
    """Vectorised :func:`choose_gpus` for a whole-GPU gang of ``num_gpu`` over many nodes at once.

    Returns a boolean ``(len(nodes), slots)`` mask of the GPUs :func:`choose_gpus` would give on each node:
    the first ``num_gpu`` wholly free GPUs of the smallest NVLink island holding them all (the lowest island
    id among equals), else the first ``num_gpu`` wholly free GPUs. Rows of nodes without enough wholly free
    GPUs are as choose_gpus would leave them (fewer GPUs).
    """
    ok = state.gpu_present[nodes] & (state.gpu_health[nodes] == 0) & (state.node_health[nodes, None] == 0)
    full = ok & (state.gpu_free[nodes] == FULL)
    isl = state.island[nodes].astype(np.int64)
    isl = isl - isl.min() if isl.size else isl
    n_isl = int(isl.max()) + 1 if isl.size else 1
    counts = np.zeros((len(nodes), n_isl), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(nodes)), isl.shape[1]), isl.ravel()), full.ravel())
    big = np.where(counts >= num_gpu, counts, np.iinfo(np.int64).max)
    chosen = big.argmin(axis=1)  # the smallest island that holds them all, lowest id first
    has = big[np.arange(len(nodes)), chosen] < np.iinfo(np.int64).max
    pool = np.where(has[:, None], full & (isl == chosen[:, None]), full)
    return np.asarray(pool & (np.cumsum(pool, axis=1) <= num_gpu))


def placement(state: ClusterState, node: int, req: Request, prefer: str = "best") -> Placement:
    gpus = choose_gpus(state, node, req, prefer)
    return Placement(node=node, gpus=gpus, milli=req.gpu_milli if req.num_gpu else 0)
