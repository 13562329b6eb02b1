"""Fragmentation gradient descent (the idea of Weng et al., USENIX ATC '23), written from the paper's text.

The *fragmentation* of a node for one task class is the free GPU share on it that the class could not use:

* if the class does not fit on the node at all (too little CPU or memory, a GPU type it may not use, no GPU
  with enough free share, too few wholly free GPUs), every free thousandth on the node is fragmented;
* otherwise the free share of every GPU whose free share is below what the class needs from one GPU (its
  fraction for a sharing class, a whole GPU for a whole-GPU class) is fragmented.

The node's expected fragmentation is the sum over the workload's task classes weighted by how often each
class appears (the observed request mix). For every node (and, for a sharing request, every distinct free
share among its GPUs) the policy computes how much the expected fragmentation would grow if the request
went there, and picks the smallest growth: a descent along the fragmentation gradient.

``rem_share`` (0 by default, which is the paper's measure) blends in a *remainder* measure for sharing
classes: the free share a node could not use if it were filled with tasks of the class alone, i.e. the node's
free share minus ``k`` × the class's request, ``k`` being the number of such tasks the node could still take
(limited by the sum over GPUs of ``free // share``, by CPU and by memory). The paper's measure calls a GPU
with 700 free thousandths unfragmented for a 500-thousandth class; the remainder measure counts the 200 that
would be left over. The composite default uses it when sharing requests dominate the mix.

Speed: per-GPU terms come from a lookup table over the 1001 possible free shares; the fragmentation of the
current state is cached per node and recomputed only for nodes whose state version changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from gpufleet.allocator.policies.base import Request, feasible, placement
from gpufleet.allocator.state import FULL, ClusterState, Placement


@dataclass(frozen=True, slots=True)
class TaskClass:
    cpu_milli: int
    mem_mib: int
    num_gpu: int
    gpu_milli: int
    models: frozenset[str] | None
    weight: float


def mix_from_requests(requests: Iterable[Request], *, include_cpu_only: bool = False,
                      by_cpu: bool = False, weight: str = "count") -> list[TaskClass]:
    """The observed request mix: task classes with their share of all requests.

    Classes are keyed by GPU count, share and allowed types, and (``by_cpu``) by CPU and memory too;
    without ``by_cpu`` (the default: measured better on openb, and faster) a class takes the median CPU and
    memory of its members.
    """
    groups: dict[tuple[object, ...], list[Request]] = {}
    for r in requests:
        if r.num_gpu == 0 and not include_cpu_only:
            continue
        key: tuple[object, ...] = (r.num_gpu, r.gpu_milli if r.num_gpu else 0, r.models)
        if by_cpu:
            key += (r.cpu_milli, r.mem_mib)
        groups.setdefault(key, []).append(r)
    def mass(members: list[Request]) -> float:
        if weight == "demand":  # share of the arriving GPU request rather than of the task count
            return float(sum(max(m.gpu_request_milli, 1) for m in members))
        return float(len(members))

    total = sum(mass(v) for v in groups.values())
    out = []
    for members in groups.values():
        cpu = int(np.median([m.cpu_milli for m in members]))
        mem = int(np.median([m.mem_mib for m in members]))
        first = members[0]
        out.append(TaskClass(cpu, mem, first.num_gpu, first.gpu_milli if first.num_gpu else 0, first.models,
                             mass(members) / total))
    return out


GENERIC_MIX = tuple(TaskClass(0, 0, n, m, None, w) for n, m, w in (
    (1, 250, 0.1), (1, 500, 0.1), (1, 1000, 0.4), (2, 1000, 0.15), (4, 1000, 0.15), (8, 1000, 0.1)))
"""The mix assumed before any request has been observed."""


class FGD:
    name = "fgd"

    def __init__(self, seed: int = 0, mix: Sequence[TaskClass] | None = None, tie_break: str = "random",
                 rem_share: float = 0.0) -> None:
        self.seed = seed
        self.rem_share = rem_share
        self.rng = np.random.default_rng(seed)
        self.tie_break = tie_break
        self._mix: list[TaskClass] = []
        self._state_id: int | None = None
        self._ver = np.zeros(0, dtype=np.int64)
        self.set_mix(mix or [])

    # ------------------------------------------------------------------ the mix
    def set_mix(self, mix: Sequence[TaskClass]) -> None:
        """Use this request mix (an empty one falls back to :data:`GENERIC_MIX`)."""
        self._mix = [c for c in mix if c.weight > 0] or list(GENERIC_MIX)
        k = len(self._mix)
        self.p = np.array([c.weight for c in self._mix])
        self.c_cpu = np.array([c.cpu_milli for c in self._mix], dtype=np.int64)
        self.c_mem = np.array([c.mem_mib for c in self._mix], dtype=np.int64)
        self.c_share = np.array([c.num_gpu == 1 and c.gpu_milli < FULL for c in self._mix], dtype=bool)
        self.c_whole = np.array([c.num_gpu >= 1 and not (c.num_gpu == 1 and c.gpu_milli < FULL) for c in self._mix])
        self.c_d = np.array([c.gpu_milli if c.num_gpu else 0 for c in self._mix], dtype=np.int32)
        self.c_n = np.array([c.num_gpu for c in self._mix], dtype=np.int32)
        thr = np.where(self.c_share, self.c_d, np.where(self.c_whole, FULL, 0))
        r = np.arange(FULL + 1)[:, None]
        # table[r, k]: the part of one GPU with free share r that class k cannot use when the node fits it
        self.table = np.where(r < thr[None, :], r, 0).astype(np.float64) if k else np.zeros((FULL + 1, 0))
        # cnt[r, k]: how many tasks of sharing class k one GPU with free share r still takes
        self.cnt = (r // np.where(self.c_share, np.maximum(self.c_d, 1), FULL)[None, :]).astype(np.float64)
        self.c_dem = np.where(self.c_share, self.c_d, self.c_n * FULL).astype(np.float64)
        self._state_id = None

    def observe(self, requests: Iterable[Request]) -> None:
        self.set_mix(mix_from_requests(requests))

    # ------------------------------------------------------------------ fragmentation
    def _model_ok(self, state: ClusterState) -> np.ndarray:
        ok = np.ones((len(state.models), len(self._mix)), dtype=bool)
        for k, c in enumerate(self._mix):
            if c.models:
                ok[:, k] = [m in c.models for m in state.models]
        return ok

    def _frag(self, S: np.ndarray, T: np.ndarray, cpu: np.ndarray, mem: np.ndarray, model: np.ndarray,
              maxf: np.ndarray, nfull: np.ndarray, C: np.ndarray | None = None) -> np.ndarray:
        ok = (cpu[:, None] >= self.c_cpu) & (mem[:, None] >= self.c_mem) & self._mok[model]
        gpu_ok = ((self.c_share & (maxf[:, None] >= self.c_d)) | (self.c_whole & (nfull[:, None] >= self.c_n))
                  | ~(self.c_share | self.c_whole))
        ok &= gpu_ok
        Tf = T[:, None].astype(np.float64)
        frag = np.where(ok, S, Tf)
        if self.rem_share and C is not None:
            # remainder measure for sharing classes: free share left once the node is filled with the class
            big = float(1 << 40)
            kc = np.where(self.c_cpu > 0, cpu[:, None] // np.maximum(self.c_cpu, 1), big)
            km = np.where(self.c_mem > 0, mem[:, None] // np.maximum(self.c_mem, 1), big)
            k = np.minimum(np.minimum(C, kc), km)
            rem = np.where(self._mok[model], Tf - k * self.c_dem, Tf)
            frag = np.where(self.c_share, (1 - self.rem_share) * frag + self.rem_share * rem, frag)
        return (frag * self.p).sum(axis=1)

    def _sync(self, state: ClusterState) -> None:
        """Bring the cached per-node sums and fragmentation up to date with the state."""
        if self._state_id != id(state) or len(self._ver) != state.n_nodes:
            self._state_id = id(state)
            self._mok = self._model_ok(state)
            n = state.n_nodes
            self._ver = np.full(n, -1, dtype=np.int64)
            self._S = np.zeros((n, len(self._mix)))
            self._C = np.zeros((n, len(self._mix)))
            self._F = np.zeros(n)
            self._usable = np.zeros_like(state.gpu_free)
        dirty = np.flatnonzero(self._ver != state.version)
        if len(dirty) == 0:
            return
        ok = (state.gpu_present[dirty] & (state.gpu_health[dirty] == 0)
              & (state.node_health[dirty] == 0)[:, None])
        usable = np.where(ok, state.gpu_free[dirty], 0)
        self._usable[dirty] = usable
        self._S[dirty] = self.table[usable].sum(axis=1)
        if self.rem_share:
            self._C[dirty] = self.cnt[usable].sum(axis=1)
        self._F[dirty] = self._frag(self._S[dirty], state.tot_free[dirty], state.cpu_free[dirty],
                                    state.mem_free[dirty], state.model_id[dirty], state.max_free[dirty],
                                    state.n_full[dirty], self._C[dirty])
        self._ver[dirty] = state.version[dirty]

    def growth(self, state: ClusterState, req: Request) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(node, gpu slot or -1, growth of expected fragmentation) for every feasible choice."""
        self._sync(state)
        nodes = np.flatnonzero(feasible(state, req))
        if len(nodes) == 0 or not self._mix:
            return nodes, np.full(len(nodes), -1), np.zeros(len(nodes))
        cpu = state.cpu_free[nodes] - req.cpu_milli
        mem = state.mem_free[nodes] - req.mem_mib
        model = state.model_id[nodes]
        if req.sharing:
            u = self._usable[nodes]
            srt = -np.sort(-u, axis=1)
            # one candidate per distinct free share that fits (equal shares give equal outcomes)
            first = np.ones_like(u, dtype=bool)
            first[:, 1:] = srt[:, 1:] != srt[:, :-1]
            cand = first & (srt >= req.gpu_milli)
            ci, cj = np.nonzero(cand)
            r = srt[ci, cj]
            rn = r - req.gpu_milli
            other = np.where(r == srt[ci, 0], srt[ci, 1] if srt.shape[1] > 1 else 0, srt[ci, 0])
            maxf = np.maximum(rn, other)
            nfull = state.n_full[nodes][ci] - (r == FULL)
            S = self._S[nodes][ci] - self.table[r] + self.table[rn]
            C = self._C[nodes][ci] - self.cnt[r] + self.cnt[rn]
            T = state.tot_free[nodes][ci] - req.gpu_milli
            F = self._frag(S, T, cpu[ci], mem[ci], model[ci], maxf, nfull, C)
            grow = F - self._F[nodes][ci]
            # map the chosen free share back to a GPU slot: the first slot on the node with that share
            slots = np.argmax(u[ci] == r[:, None], axis=1)
            return nodes[ci], slots, grow
        nfull = state.n_full[nodes] - req.num_gpu
        if req.num_gpu:
            part = np.where(self._usable[nodes] < FULL, self._usable[nodes], 0).max(axis=1)
            maxf = np.where(nfull > 0, FULL, part)
        else:
            maxf = state.max_free[nodes]
        C = self._C[nodes] - req.num_gpu * self.cnt[FULL][None, :]  # whole GPUs taken
        T = state.tot_free[nodes] - req.gpu_request_milli
        F = self._frag(self._S[nodes], T, cpu, mem, model, maxf, nfull, C)
        return nodes, np.full(len(nodes), -1), F - self._F[nodes]

    def place(self, state: ClusterState, req: Request) -> Placement | None:
        nodes, slots, grow = self.growth(state, req)
        if len(nodes) == 0:
            return None
        k = self._pick(state, req, nodes, slots, grow)
        return self._placement(state, req, int(nodes[k]), int(slots[k]))

    def _pick(self, state: ClusterState, req: Request, nodes: np.ndarray, slots: np.ndarray,
              score: np.ndarray) -> int:
        """Lowest score; ties by ``tie_break``: ``bestfit`` (least share left on the GPU, then on the node),
        ``random`` or ``first``."""
        best = score.min()
        ties = np.flatnonzero(score <= best + 1e-9)
        if len(ties) == 1 or self.tie_break == "first":
            return int(ties[0])
        if self.tie_break == "bestfit":
            n = nodes[ties]
            gpu_left = np.where(slots[ties] >= 0, state.gpu_free[n, np.maximum(slots[ties], 0)], 0)
            return int(ties[np.lexsort((state.tot_free[n], gpu_left))[0]])
        return int(ties[self.rng.integers(len(ties))])

    @staticmethod
    def _placement(state: ClusterState, req: Request, node: int, slot: int) -> Placement:
        if req.sharing and slot >= 0:
            return Placement(node, (slot,), req.gpu_milli)
        return placement(state, node, req)
