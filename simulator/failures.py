"""Failure modes of the twin, with and without precursors, and the ground-truth labels.

Rates and proportions (see docs/twin.md, ``tests/simulator/test_failures.py`` re-derives them from
the data):

* Base rate: InfiniteHBD (StepFun, ~400 servers x 348 days): 158 GPU-class hardware faults, i.e.
  1.42e-4 per GPU-day with 8 GPUs per server (~5 % per GPU-year).
* Age and position: ORNL Titan (``gc_summary_loc.csv``): failures per GPU-year by year of life
  (0.0014, 0.006, 0.098, 0.134, 0.125, 0.151: a wear-out ramp from year 2), by slot 0..7 and by cage
  (bottom to top of the cabinet: 0.66, 1.05, 1.29 of the mean).
* Mix (InfiniteHBD GPU class): DBE/SBE/SDC over threshold 62 -> ``ecc_dbe``; GPU lost / not found /
  unknown device error / nvidia-smi timeout 55 -> ``fall_off_bus`` (XID 79); PCIe link width low 25
  -> ``pcie``; GPU xid error + P2P bandwidth low 14 -> ``nvlink`` (XID 74); temperature high 2 ->
  ``thermal``.
* Repeat faults: 61 of 158 GPU faults hit a node that had one before; the gap has a median of 18.3
  days (IQR 7.2-52.8): after a fault, with probability 0.39 another follows on the same node after a
  lognormal gap (median 18.3 d, sigma 1.48).
* Repair time: fault_start -> fault_end median 0.85 days (lognormal, sigma 2.0).

Precursor shares are assumptions (the traces carry no telemetry): 60 % of ECC failures are preceded
by rising correctable errors and a pending row remap over 1-5 days; 10 % of bus losses by PCIe
replays over 2-24 h; every thermal failure by cooling degradation over 2-7 days; 70 % of NVLink
failures by CRC errors over 1-12 h.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
from gpufleet.exporter.schema import Event, EventKind
from gpufleet.simulator.inventory import RACK_HAZARD, SLOT_HAZARD, GpuSlot, Node
from gpufleet.simulator.physics import Physics

BASE_RATE_PER_GPU_DAY = 158 / (400 * 348.98 * 8)
TITAN_AGE_RATE = (0.0014, 0.006, 0.098, 0.1339, 0.1251, 0.1513)  # per GPU-year by year of life
MIX = {"ecc_dbe": 62, "fall_off_bus": 55, "pcie": 25, "nvlink": 14, "thermal": 2}
PRECURSOR_SHARE = {"ecc_dbe": 0.6, "fall_off_bus": 0.1, "pcie": 0.0, "nvlink": 0.7, "thermal": 1.0}
PRECURSOR_LEAD_S = {"ecc_dbe": (86400, 5 * 86400), "fall_off_bus": (7200, 86400), "pcie": (0, 0),
                    "nvlink": (3600, 12 * 3600), "thermal": (2 * 86400, 7 * 86400)}
XID = {"ecc_dbe": 48, "fall_off_bus": 79, "nvlink": 74, "thermal": 79}
REPEAT_PROB = 61 / 158
REPEAT_GAP_MEDIAN_S = 18.32 * 86400
REPEAT_GAP_SIGMA = 1.48
REPAIR_MEDIAN_S = 0.85 * 86400
REPAIR_SIGMA = 2.0
APP_XIDS = (13, 31, 43)
INJECT_KINDS = ("overheat", "fall_off_bus", "ecc_dbe", "nvlink", "thermal", "pcie", "cooling_degradation",
                "xid13", "xid31", "xid43")


def age_multiplier(age_days: np.ndarray) -> np.ndarray:
    """Titan's hazard by year of life, normalised to a mean of 1 over the first four years."""
    rates = np.array(TITAN_AGE_RATE)
    rel = rates / rates[:4].mean()
    year = np.clip((age_days // 365).astype(int), 0, len(rates) - 1)
    return np.asarray(rel[year])


@dataclass(order=True)
class _Pending:
    at: float
    seq: int
    gpu: int = field(compare=False)
    mode: str = field(compare=False)
    onset: float = field(compare=False)
    precursor: bool = field(compare=False)
    duration: float | None = field(compare=False, default=None)
    injected: bool = field(compare=False, default=False)
    cancelled: bool = field(compare=False, default=False)


class FailureModel:
    """Draws failure onsets, drives precursors through the physics modifiers, and fires failures."""

    def __init__(self, nodes: list[Node], gpus: list[GpuSlot], node_of: np.ndarray, physics: Physics,
                 seed: int, enabled: bool = True, rate_multiplier: float = 1.0) -> None:
        self.rng = np.random.default_rng([seed, 6])
        self.nodes, self.gpus, self.node_of, self.ph = nodes, gpus, node_of, physics
        self.enabled = enabled
        n = len(gpus)
        slot = np.array([SLOT_HAZARD[g.index % 8] for g in gpus])
        rack = np.array([RACK_HAZARD[nodes[int(node_of[i])].rack_position % 3] for i in range(n)])
        age = np.array([g.age_days for g in gpus])
        self.age0 = age
        self.pos_mult = slot * rack
        self.rate_multiplier = rate_multiplier
        self.failed = np.zeros(n, dtype=bool)  # out of service (waiting for repair)
        self.pending = np.zeros(n, dtype=bool)  # a failure is scheduled (precursor running)
        self._queue: list[_Pending] = []
        self._active: dict[int, _Pending] = {}  # gpu -> pending failure with a running precursor
        self._repairs: list[tuple[float, int, int]] = []
        self._overheats: list[tuple[float, int, int]] = []
        self._seq = 0
        self.labels: list[Event] = []
        modes = list(MIX)
        self._modes = modes
        self._mix = np.array([MIX[m] for m in modes], dtype=float) / sum(MIX.values())

    # -- scheduling -------------------------------------------------------------------------------
    def _push(self, p: _Pending) -> None:
        self._seq += 1
        p.seq = self._seq
        heapq.heappush(self._queue, p)
        self.pending[p.gpu] = True

    def _new_onset(self, gpu: int, now: float, mode: str | None = None) -> None:
        rng = self.rng
        mode = mode or self._modes[int(rng.choice(len(self._modes), p=self._mix))]
        precursor = bool(rng.random() < PRECURSOR_SHARE[mode])
        lead = float(rng.uniform(*PRECURSOR_LEAD_S[mode])) if precursor else 0.0
        p = _Pending(now + lead, 0, gpu, mode, now, precursor)
        self._push(p)
        if precursor:
            self._active[gpu] = p

    def inject_fault(self, gpu: int, kind: str, at: float, duration: float | None = None) -> None:
        if kind not in INJECT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(INJECT_KINDS)}")
        if kind == "cooling_degradation":  # thermal precursor from ``at``; thermal failure after ``duration``
            p = _Pending(at + (duration or 3 * 86400.0), 0, gpu, "thermal", at, True, None, injected=True)
            self._push(p)
            self._active[gpu] = p
            return
        self._push(_Pending(at, 0, gpu, kind, at, False, duration, injected=True))

    # -- per step ---------------------------------------------------------------------------------
    def step(self, now: float, dt: float, t_start: float) -> tuple[list[Event], list[int], list[int]]:
        """Advance to ``now``. Returns (telemetry events, GPUs that failed, GPUs repaired)."""
        events: list[Event] = []
        failed_now: list[int] = []
        repaired: list[int] = []
        if self.enabled:
            age = self.age0 + (now - t_start) / 86400.0
            h = BASE_RATE_PER_GPU_DAY / 86400.0 * age_multiplier(age) * self.pos_mult * self.rate_multiplier
            p = -np.expm1(-h * dt)
            hit = (self.rng.random(len(h)) < p) & ~self.failed & ~self.pending & ~self.ph.lost
            for hg in np.flatnonzero(hit):
                self._new_onset(int(hg), now)
        self._drive_precursors(now)
        while self._queue and self._queue[0].at <= now:
            p = heapq.heappop(self._queue)
            if p.cancelled:
                continue
            self.pending[p.gpu] = False
            self._active.pop(p.gpu, None)
            if p.mode == "overheat":
                self._start_overheat(p, now)
                continue
            if p.mode.startswith("xid"):
                events.append(self._event(p.at, EventKind.XID, p.gpu, int(p.mode[3:]),
                                          {"injected": True}))
                continue
            if self.failed[p.gpu]:
                continue
            events.extend(self._fire(p))
            failed_now.append(p.gpu)
        while self._overheats and self._overheats[0][0] <= now:
            _, _, go = heapq.heappop(self._overheats)
            self.ph.temp_floor[go] = -np.inf
        while self._repairs and self._repairs[0][0] <= now:
            at, _, gi = heapq.heappop(self._repairs)
            g = int(gi)
            self.failed[g] = False
            self.ph.reset(g)
            events.append(self._event(at, EventKind.GPU_RECOVERED, g, None, {}))
            repaired.append(g)
        # Thermal runaway: a GPU at its shutdown temperature fails now.
        if self.enabled:
            over = np.flatnonzero((self.ph.temp >= self.ph.shutdown) & ~self.failed & ~self.ph.lost)
            for og in over:
                p = self._active.pop(int(og), None)
                if p is not None:
                    p.cancelled = True  # the scheduled failure happened early (runaway)
                    self.pending[int(og)] = False
                onset = p.onset if p else now
                events.extend(self._fire(_Pending(now, 0, int(og), "thermal", onset, p is not None)))
                failed_now.append(int(og))
        return events, failed_now, repaired

    def _start_overheat(self, p: _Pending, now: float) -> None:
        g = p.gpu
        self.ph.temp_floor[g] = self.ph.slowdown[g] + 1.0
        self._seq += 1
        heapq.heappush(self._overheats, (p.at + (p.duration or 600.0), self._seq, g))

    def _drive_precursors(self, now: float) -> None:
        ph = self.ph
        for g, p in self._active.items():
            span = max(p.at - p.onset, 1.0)
            x = min(max((now - p.onset) / span, 0.0), 1.0)
            if p.mode == "ecc_dbe":
                ph.sbe_mult[g] = 1.0 + 3000.0 * x ** 3
                if x > 0.6:
                    if self.gpus[g].spec.row_remap:
                        ph.row_pending[g] = 1.0
                    else:
                        ph.retired_pending[g] = 1.0
            elif p.mode == "fall_off_bus":
                ph.pcie_replay_rate[g] = 1e-6 + 0.05 * x ** 2
            elif p.mode == "nvlink":
                ph.nvlink_crc_rate[g] = 0.5 * x ** 2
            elif p.mode == "thermal":
                ph.cooling_degrade[g] = 1.0 + 1.2 * x

    def _event(self, ts: float, kind: EventKind, g: int, code: int | None, detail: dict[str, object]) -> Event:
        return Event(ts=ts, kind=kind, uuid=self.gpus[g].uuid, node=self.nodes[int(self.node_of[g])].name,
                     code=code, detail=dict(detail))

    def _fire(self, p: _Pending) -> list[Event]:
        g, ph, mode = p.gpu, self.ph, p.mode
        ev: list[Event] = []
        xid = XID.get(mode)
        if mode == "ecc_dbe":
            ph.dbe_vol[g] += 1
            ph.dbe_agg[g] += 1
            if self.gpus[g].spec.row_remap:
                ph.rows_unc[g] += 1
                ph.row_pending[g] = 1.0
                if self.rng.random() < 0.1:
                    ph.row_failure[g] = 1.0
                    ev.append(self._event(p.at, EventKind.ROW_REMAP_FAILURE, g, None, {}))
            else:
                ph.retired_dbe[g] += 1
                ph.retired_pending[g] = 1.0
            ev.append(self._event(p.at, EventKind.ECC_DBE, g, None, {"count": 1}))
        elif mode in ("fall_off_bus", "thermal"):
            ph.lost[g] = True
            ev.append(self._event(p.at, EventKind.GPU_LOST, g, None, {"reason": mode}))
        elif mode == "nvlink":
            if ph.links[g] > 0:
                ph.nvlink_down[g, 0] = True
                ph.nvlink_crc[g, 0] += 50
        elif mode == "pcie":
            ph.link_width[g] = max(ph.link_width_max[g] / 2, 1)
        if xid is not None:
            ev.insert(0, self._event(p.at, EventKind.XID, g, xid, {}))
        self.failed[g] = True
        if p.duration is not None:
            repair = p.duration
        else:
            repair = float(self.rng.lognormal(np.log(REPAIR_MEDIAN_S), REPAIR_SIGMA))
            repair = min(max(repair, 600.0), 30 * 86400.0)
        self._seq += 1
        heapq.heappush(self._repairs, (p.at + repair, self._seq, g))
        self.labels.append(self._event(p.at, EventKind.FAILURE, g, xid, {
            "mode": mode, "precursor": p.precursor, "onset": p.onset, "repair_s": repair,
            "injected": p.injected}))
        if not p.injected and self.enabled and self.rng.random() < REPEAT_PROB:
            node = int(self.node_of[g])
            members = np.flatnonzero(self.node_of == node)
            target = int(self.rng.choice(members))
            gap = float(self.rng.lognormal(np.log(REPEAT_GAP_MEDIAN_S), REPEAT_GAP_SIGMA))
            mode2 = self._modes[int(self.rng.choice(len(self._modes), p=self._mix))]
            pre = bool(self.rng.random() < PRECURSOR_SHARE[mode2])
            lead = float(self.rng.uniform(*PRECURSOR_LEAD_S[mode2])) if pre else 0.0
            at = p.at + max(gap, lead + 3600.0)
            self._push(_Pending(at, 0, target, mode2, at - lead, pre))
            # Its precursor starts at onset; _drive_precursors only sees it once it is active.
            if pre:
                self._active_later(target, at - lead)
        return ev

    def _active_later(self, gpu: int, onset: float) -> None:
        for q in self._queue:
            if q.gpu == gpu and abs(q.onset - onset) < 1e-6:
                self._active[gpu] = q
                return
