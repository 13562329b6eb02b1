"""Load- and memory-aware placement for shared GPUs.

A sharing request joins the GPU with the lowest live load: ``util_weight`` × utilisation plus
``mem_weight`` × memory in use over GPU memory (both from the exporter's snapshot), among GPUs with
enough free share *and* enough free GPU memory for the request's ``gpu_mem_bytes``. Whole-GPU requests go to
the node whose free GPUs are least loaded (a GPU can be allocated-free yet still warm from a finished
job's neighbours). Exact ties fall back to best fit (fuller nodes first). Vectorised over nodes × GPUs.
"""

from __future__ import annotations

import numpy as np
from gpufleet.allocator.policies.base import Request, feasible
from gpufleet.allocator.state import FULL, ClusterState, Placement


class LoadAware:
    name = "load_aware"

    def __init__(self, seed: int = 0, util_weight: float = 1.0, mem_weight: float = 1.0) -> None:
        self.seed = seed
        self.util_weight = util_weight
        self.mem_weight = mem_weight

    def gpu_load(self, state: ClusterState) -> np.ndarray:
        mem = np.where(np.isfinite(state.gpu_mem) & (state.gpu_mem > 0), state.gpu_mem, np.inf)
        return self.util_weight * state.util + self.mem_weight * state.mem_used / mem[:, None]

    def candidates(self, state: ClusterState, req: Request) -> tuple[np.ndarray, np.ndarray]:
        """(feasible nodes, per-GPU mask of usable slots on them)."""
        nodes = np.flatnonzero(feasible(state, req))
        free = state.gpu_free[nodes]
        ok = state.gpu_present[nodes] & (state.gpu_health[nodes] == 0)
        ok &= free >= req.gpu_milli if req.sharing else free == FULL
        if req.gpu_mem_bytes and req.sharing:
            room = state.gpu_mem[nodes][:, None] - state.mem_used[nodes]
            ok &= ~(room < req.gpu_mem_bytes)
        return nodes, ok

    def place(self, state: ClusterState, req: Request) -> Placement | None:
        if req.num_gpu == 0:
            ok = feasible(state, req)
            return Placement(int(np.argmax(ok))) if ok.any() else None
        nodes, ok = self.candidates(state, req)
        enough = ok.sum(axis=1) >= req.num_gpu
        nodes, ok = nodes[enough], ok[enough]
        if len(nodes) == 0:
            return None
        load = np.where(ok, self.gpu_load(state)[nodes], np.inf)
        order = np.argsort(load, axis=1, kind="stable")[:, : req.num_gpu]
        chosen = np.take_along_axis(load, order, axis=1).sum(axis=1)
        left = (state.tot_free[nodes] - req.gpu_request_milli) / (np.maximum(state.gpu_count[nodes], 1) * 1000.0)
        k = int(np.lexsort((left, chosen))[0])
        return Placement(int(nodes[k]), tuple(sorted(int(g) for g in order[k])), req.gpu_milli)
