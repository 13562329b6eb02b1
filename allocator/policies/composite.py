"""The composite default policy: fragmentation-aware packing with risk, load and topology terms.

Score of each feasible choice (lower is better), all terms vectorised over nodes:

* the growth of expected fragmentation for the observed request mix (the FGD term, in thousandths); when
  sharing requests make up more than half of the mix (share ``s``), sharing classes blend in the remainder
  measure of :mod:`allocator.policies.fgd` with weight ``s`` (``adaptive_rem``; it raised the allocation
  on the gpushare lists and lowered it on whole-GPU-heavy lists, seeds 0-3);
* ``pack_weight`` × the node's GPU share left after placement (prefer fuller nodes: best fit on GPUs);
  this mostly breaks the FGD term's many ties and measurably raises the allocation ratio on openb;
* ``risk_weight`` × the expected GPU-hours the placement loses to GPU failures (cost units per GPU-hour;
  see :mod:`allocator.policies.risk_aware` for the arithmetic), the sum of two parts:

  - *own loss*: the request's GPUs × share × hours × P(any of the GPUs it would get fails during the job),
    with the GPUs it would actually get (a whole-GPU request of one GPU and a sharing request take the
    lowest-risk fitting GPU of the node, gangs the NVLink-island rule). An 8-GPU gang has 8× the GPU-hours
    at stake of a 1-GPU job and sums 8 hazards, so it is steered to low-risk nodes far harder;
  - *gang guard* (FGD's "expected over the observed request mix", applied to failure loss): a request that
    would break the wholly free node with the lowest expected loss for a whole-node gang pays, weighted by
    the gangs' share of the request mix, the gang's extra expected loss on the next best wholly free node
    over the request's own hours (how long it keeps the node broken). Without it long single-GPU jobs fill
    the safe nodes and the gangs (which need a wholly free node) land on the risky ones.

  The former term (max risk of the node's free GPUs × hours, the same for a 1-GPU and an 8-GPU job) stays
  as ``risk_cost="node_max"`` for comparison (docs/allocator.md has both measured in the digital twin).
  ``gang_guard`` (default: the mix share) fixes the guard's weight instead. ``risk_weight`` 1000 (one
  expected GPU-hour lost weighs about as much as one GPU of fragmentation growth) and the mix-share guard
  were chosen on the twin's exploration seeds 1-6 against 300 / 3000 and guard weights 0 / 1.
  With no risk known (all zero, as in trace replays) the term is skipped and placement is unchanged;
* ``load_weight`` × live utilisation of the GPUs a sharing request would join
  (see :mod:`allocator.policies.load_aware`).

Equal scores are broken by best fit (least share left on the chosen GPU, then on the node).
Whole-GPU gangs take one NVLink island on the node where one has room (:func:`choose_gpus`).

Variants measured on seeds 0-3 of all openb lists and not kept, since none raised the allocation across the
lists, are listed with their figures in docs/allocator.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from gpufleet.allocator.policies.base import Request, choose_gpus, gang_gpu_mask
from gpufleet.allocator.policies.fgd import FGD, TaskClass, mix_from_requests
from gpufleet.allocator.policies.risk_aware import expected_loss, hazard_per_hour
from gpufleet.allocator.state import FULL, ClusterState, Placement

MULTI_GATE = 0.03
"""Share of multi-GPU requests among GPU requests above which task classes are keyed by CPU and memory too."""


class Composite(FGD):
    name = "default"

    def __init__(self, seed: int = 0, pack_weight: float = 3.0, risk_weight: float = 1000.0,
                 load_weight: float = 100.0, gpu_fit_weight: float = 0.0, pack_sharing: bool | str = True,
                 tie_break: str = "bestfit", adaptive_rem: bool = True, risk_cost: str = "expected",
                 gang_guard: float | None = None, **kwargs: object) -> None:
        self.adaptive_rem = adaptive_rem
        super().__init__(seed=seed, tie_break=tie_break, **kwargs)  # type: ignore[arg-type]
        self.pack_weight = pack_weight
        self.risk_weight = risk_weight
        self.load_weight = load_weight
        self.gpu_fit_weight = gpu_fit_weight
        self.pack_sharing = pack_sharing
        if risk_cost not in ("expected", "node_max"):
            raise ValueError(f"risk_cost must be 'expected' or 'node_max', not {risk_cost!r}")
        self.risk_cost_kind = risk_cost
        self.gang_guard = gang_guard

    def extra_cost(self, state: ClusterState, req: Request, nodes: np.ndarray, slots: np.ndarray) -> np.ndarray:
        gcap = np.maximum(state.gpu_count[nodes], 1) * 1000.0
        cost = np.zeros(len(nodes))
        w = self.pack_weight
        if req.sharing:
            w *= self.whole_share if self.pack_sharing == "scaled" else float(bool(self.pack_sharing))
        if w:
            cost = cost + w * (state.tot_free[nodes] - req.gpu_request_milli) / gcap
        if req.sharing and self.gpu_fit_weight:
            # best fit on the GPU too: the share left on the chosen GPU after placement
            cost = cost + self.gpu_fit_weight * (state.gpu_free[nodes, np.maximum(slots, 0)] - req.gpu_milli) / 1000.0
        if req.num_gpu and self.risk_weight and state.risk.any():
            cost = cost + self.risk_weight * self.risk_cost(state, req, nodes, slots)
        if req.sharing and self.load_weight and state.util.any():
            has = slots >= 0
            u = np.zeros(len(nodes))
            u[has] = state.util[nodes[has], slots[has]]
            cost = cost + self.load_weight * u
        return cost

    # ------------------------------------------------------------------ failure risk
    def risk_cost(self, state: ClusterState, req: Request, nodes: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Expected GPU-hours lost to failures for each choice: the request's own, plus the gang guard."""
        hours = (req.duration_s or 3600.0) / 3600.0
        if self.risk_cost_kind == "node_max":  # the former term: max risk of the node's free GPUs x hours
            return np.asarray(np.where(state.gpu_free[nodes] > 0, state.risk[nodes], 0.0).max(axis=1) * hours)
        ok = state.gpu_present & (state.gpu_health == 0) & (state.node_health[:, None] == 0)
        usable = np.where(ok, state.gpu_free, 0)
        lam = hazard_per_hour(state.risk, state.risk_horizon_s)
        own = self._own_hazard(state, req, nodes, slots, usable, lam)
        stake = req.num_gpu * req.gpu_milli / FULL
        cost = expected_loss(stake, own, hours)
        guard = self._gang_share(state) if self.gang_guard is None else self.gang_guard
        if guard:
            cost = cost + guard * self._gang_displacement(state, req, nodes, usable, lam, hours)
        return cost

    @staticmethod
    def _own_hazard(state: ClusterState, req: Request, nodes: np.ndarray, slots: np.ndarray, usable: np.ndarray,
                    lam: np.ndarray) -> np.ndarray:
        """Summed hazard per hour of the GPUs each choice would give the request (:meth:`risk_gpus`)."""
        u, lm = usable[nodes], lam[nodes]
        if req.sharing:
            same = u == u[np.arange(len(nodes)), np.maximum(slots, 0)][:, None]
            return np.asarray(np.where(same & (u > 0), lm, np.inf).min(axis=1))
        if req.num_gpu == 1:
            return np.asarray(np.where(u == FULL, lm, np.inf).min(axis=1))
        return np.asarray(np.where(gang_gpu_mask(state, nodes, req.num_gpu), lm, 0.0).sum(axis=1))

    def _gang_share(self, state: ClusterState) -> float:
        """Share of the request mix made of gangs that need a wholly free node (all GPUs of the largest node)."""
        if not len(self.p):
            return 0.0
        return float(self.p[self.c_whole & (self.c_n >= int(state.gpu_count.max()))].sum())

    @staticmethod
    def _gang_displacement(state: ClusterState, req: Request, nodes: np.ndarray, usable: np.ndarray,
                           lam: np.ndarray, hours: float) -> np.ndarray:
        """Extra expected loss of a whole-node gang if this request breaks the wholly free node the gang would
        have taken (the lowest-loss one of its size): the gang then runs on the next best wholly free node.
        Measured over the request's own hours (how long it keeps the node broken)."""
        count = state.gpu_present.sum(axis=1)
        whole = (usable == FULL).sum(axis=1) == count
        gang = expected_loss(count, np.where(state.gpu_present, lam, 0.0).sum(axis=1), hours)
        out = np.zeros(len(nodes))
        for g in np.unique(count[nodes]):
            group = np.flatnonzero(whole & (count == g))
            if len(group) < 2 or req.num_gpu >= g:
                continue
            first, second = np.sort(gang[group])[:2]
            hit = whole[nodes] & (count[nodes] == g) & (gang[nodes] <= first)
            out[hit] = second - first
        return out

    def risk_gpus(self, state: ClusterState, req: Request, node: int, slot: int) -> tuple[int, ...]:
        """The GPUs the request gets on ``node`` when risk is known: the lowest-risk wholly free GPU (one whole
        GPU), the lowest-risk GPU with the chosen free share (sharing), the NVLink-island rule (gangs)."""
        u = state.usable_free(node)
        r = state.risk[node]
        if req.sharing:
            cand = np.flatnonzero(u == u[max(slot, 0)])
        elif req.num_gpu == 1:
            cand = np.flatnonzero(u == FULL)
        else:
            return choose_gpus(state, node, req)
        return (int(cand[np.argmin(r[cand])]),)

    def observe(self, requests: Iterable[Request]) -> None:
        reqs = list(requests)
        gpu = [r for r in reqs if r.num_gpu]
        multi = sum(r.num_gpu > 1 for r in gpu) / max(len(gpu), 1)
        # frequent multi-GPU requests: CPU shortage is what strands whole GPUs, so key classes by CPU and memory
        self.set_mix(mix_from_requests(reqs, by_cpu=self.adaptive_rem and multi > MULTI_GATE))

    def set_mix(self, mix: Sequence[TaskClass]) -> None:
        super().set_mix(mix)
        if self.adaptive_rem:
            # blend in the remainder measure for sharing classes only when sharing requests dominate the mix
            s = float(self.p[self.c_share].sum()) if len(self.p) else 0.0
            self.rem_share = s if s > 0.5 else 0.0

    @property
    def whole_share(self) -> float:
        """Share of whole-GPU classes in the request mix."""
        return float(self.p[self.c_whole].sum()) if len(self.p) else 0.0

    def place(self, state: ClusterState, req: Request) -> Placement | None:
        nodes, slots, grow = self.growth(state, req)
        if len(nodes) == 0:
            return None
        score = grow + self.extra_cost(state, req, nodes, slots)
        k = self._pick(state, req, nodes, slots, score)
        node, slot = int(nodes[k]), int(slots[k])
        if req.num_gpu and self.risk_weight and self.risk_cost_kind == "expected" and state.risk.any():
            return Placement(node, self.risk_gpus(state, req, node, slot), req.gpu_milli)
        return self._placement(state, req, node, slot)
