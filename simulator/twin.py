"""The digital twin: inventory + workload + physics + failures, producing what the NVML source produces.

``Twin(config).run(start, duration_s, step_s)`` yields **one Snapshot per node per step** (the same
shape as one exporter per node), in node order within a step. Ground-truth failure labels are kept
apart in ``twin.labels`` (``Event(kind=EventKind.FAILURE)``) and never appear in a snapshot; jobs are
in ``twin.jobs``. ``TwinSource`` wraps a twin as an :class:`exporter.sources.base.Source` that
advances the simulation to the wall clock (times ``speed``) at every ``collect(now)``.

Samples carry catalogue field ids in base units; fields a real GPU of that model does not support
(GPM metrics before Hopper, HBM temperature on GDDR boards, NVLink on PCIe boards, fan speed on
passively cooled boards, row remapping before Ampere) are absent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gpufleet.exporter.errors import ConfigError, NotFound
from gpufleet.exporter.schema import CollectorStat, Device, Event, EventKind, Sample, Snapshot
from gpufleet.exporter.sources.base import Source
from gpufleet.simulator.failures import APP_XIDS, FailureModel
from gpufleet.simulator.inventory import Inventory, default_inventory, load_inventory
from gpufleet.simulator.physics import REASON_BITS, Activity, Physics
from gpufleet.simulator.workload import (
    APP_XID_PROB,
    Cluster,
    GenaiReplay,
    Job,
    JobSource,
    OpenbReplay,
    Placer,
    SyntheticJobs,
)

WORKLOADS = ("synthetic", "openb", "genai")
FIELD_SETS = ("history", "full")
DRIVER, CUDA = "550.90.07", "12.4"


@dataclass
class TwinConfig:
    """Everything that defines a twin run; the same config and seed give the same output."""

    nodes: int = 4
    gpus_per_node: int = 8
    seed: int = 0
    inventory: str | Path | None = None  # openb / spot-GPU node list; None = built-in mixed fleet
    aliases: dict[str, str] = field(default_factory=dict)
    failures: bool = True
    workload: str = "synthetic"  # synthetic | openb | genai
    workload_path: str | Path | None = None  # openb pod list, or the GenAI trace folder
    failure_rate_multiplier: float = 1.0  # >1 accelerates label generation
    step_s: float = 60.0  # largest internal step (TwinSource sub-steps to this)
    fields: str = "full"  # full: every supported field; history: the core set (see HISTORY_FIELDS)
    job_events: bool = False  # put JOB_START / JOB_END / JOB_INTERRUPTED in snapshots
    models: tuple[str, ...] | None = None  # built-in inventory model cycle
    warmup_s: float = 43200.0  # simulated before the start (no output, no failures): jobs at steady state

    def validate(self) -> None:
        if self.nodes < 1 or self.gpus_per_node < 1 or self.gpus_per_node > 16:
            raise ConfigError("nodes must be >= 1 and gpus_per_node 1..16")
        if self.workload not in WORKLOADS:
            raise ConfigError(f"workload must be one of {WORKLOADS}, got {self.workload!r}")
        if self.workload != "synthetic" and self.workload_path is None:
            raise ConfigError(f"workload {self.workload!r} needs workload_path")
        if self.fields not in FIELD_SETS:
            raise ConfigError(f"fields must be one of {FIELD_SETS}, got {self.fields!r}")
        if self.failure_rate_multiplier < 0 or self.step_s <= 0 or self.warmup_s < 0:
            raise ConfigError("failure_rate_multiplier and warmup_s must be >= 0 and step_s > 0")


# Core set written by `gpufleet twin run` (what predictors and dashboards read); "full" adds static
# limits, per-link NVLink counters, per-reason throttle series, encoder/decoder and video clocks.
HISTORY_FIELDS = frozenset({
    "util_gpu", "util_memory", "fb_used", "fb_free", "temperature_gpu", "temperature_memory", "power_usage",
    "energy", "clock_sm", "clock_memory", "pcie_tx", "pcie_rx", "pcie_replay", "pcie_link_width",
    "ecc_corrected_volatile", "ecc_uncorrected_volatile", "ecc_corrected_aggregate", "ecc_uncorrected_aggregate",
    "remapped_rows_correctable", "remapped_rows_uncorrectable", "row_remap_pending", "row_remap_failure",
    "retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending", "clock_event_reasons",
    "throttle_power_seconds", "throttle_thermal_seconds", "processes", "prof_sm_active",
    "prof_pipe_tensor_active", "prof_dram_active", "prof_sm_occupancy", "nvlink_bandwidth", "xid_errors",
})


class Twin:
    """A simulated fleet. Not thread-safe; one owner advances it."""

    def __init__(self, config: TwinConfig | None = None, placer: Placer | None = None) -> None:
        self.config = cfg = config or TwinConfig()
        cfg.validate()
        if cfg.inventory is not None:
            self.inventory: Inventory = load_inventory(cfg.inventory, seed=cfg.seed, aliases=cfg.aliases or None)
        else:
            kw = {"models": cfg.models} if cfg.models else {}
            self.inventory = default_inventory(cfg.nodes, cfg.gpus_per_node, cfg.seed, **kw)
        self.nodes = self.inventory.nodes
        self.slots = [g for n in self.nodes for g in n.gpus]
        self.n = len(self.slots)
        slices, i = [], 0
        for nd in self.nodes:
            slices.append(slice(i, i + len(nd.gpus)))
            i += len(nd.gpus)
        self.node_slices = slices
        self.cluster = Cluster(slices, placer)
        self.physics = Physics(self.slots, self.cluster.node_of, cfg.seed)
        self.failures = FailureModel(self.nodes, self.slots, self.cluster.node_of, self.physics, cfg.seed,
                                     enabled=cfg.failures, rate_multiplier=cfg.failure_rate_multiplier)
        self.rng = np.random.default_rng([cfg.seed, 7])
        self.uuid_index = {g.uuid: k for k, g in enumerate(self.slots)}
        self._jobs_src: JobSource | None = None
        self._genai: GenaiReplay | None = None
        self.now: float | None = None
        self.start: float | None = None
        self._node_events: list[list[Event]] = [[] for _ in self.nodes]
        # Per node: gpu -> XID code -> count (the xid_errors counters).
        self._xid_counts: list[dict[int, dict[int, int]]] = [{} for _ in self.nodes]
        self._xid_last = np.zeros(self.n)
        self.devices_by_node = [[self._device(nd.name, g) for g in nd.gpus] for nd in self.nodes]
        self._emit = _Emitter(self)

    # -- identity ------------------------------------------------------------------------------
    def _device(self, node: str, g: object) -> Device:
        from gpufleet.simulator.inventory import GpuSlot
        assert isinstance(g, GpuSlot)
        return Device(uuid=g.uuid, index=g.index, node=node, model=g.spec.model, vendor="nvidia",
                      pci_bus_id=g.pci_bus_id, memory_total_bytes=g.spec.memory_bytes, driver_version=DRIVER,
                      cuda_version=CUDA, vbios_version="96.00.89.00.01", serial=g.serial,
                      virtualization="baremetal")

    def devices(self) -> list[Device]:
        return [d for ds in self.devices_by_node for d in ds]

    @property
    def labels(self) -> list[Event]:
        """Ground-truth failure labels so far (never part of a snapshot)."""
        return list(self.failures.labels)

    @property
    def jobs(self) -> list[Job]:
        """Every job seen so far: finished, running and queued."""
        return list(self.cluster.finished) + list(self.cluster.running.values()) + list(self.cluster.queue)

    # -- time ------------------------------------------------------------------------------------
    def begin(self, start: float) -> None:
        """Set the simulation clock; called by run() / the first advance()."""
        cfg = self.config
        warm = cfg.warmup_s if cfg.workload == "synthetic" else 0.0
        self.start = float(start)
        self.now = float(start) - warm
        if cfg.workload == "synthetic":
            self._jobs_src = SyntheticJobs(self.n, cfg.seed)
        elif cfg.workload == "openb":
            assert cfg.workload_path is not None
            self._jobs_src = OpenbReplay(cfg.workload_path, start, cfg.seed)
        else:
            assert cfg.workload_path is not None
            self._genai = GenaiReplay(cfg.workload_path, self.n, cfg.seed)
        if warm > 0:
            enabled, self.failures.enabled = self.failures.enabled, False
            while self.now < start - 1e-9:
                self._step(min(start, self.now + max(cfg.step_s, 60.0)))
            self.failures.enabled = enabled
            self._node_events = [[] for _ in self.nodes]
            self.cluster.finished.clear()

    def inject_fault(self, uuid: str, kind: str, at: float, duration: float | None = None) -> None:
        """Schedule a fault for a scenario: 'overheat' (temperature past slowdown for ``duration``,
        default 600 s), 'fall_off_bus' (XID 79, GPU lost; back after ``duration`` if given), 'ecc_dbe',
        'nvlink', 'thermal', 'pcie', 'cooling_degradation' (cooling worsens from ``at`` for ``duration``,
        default 3 days, ending in a thermal failure), or an application XID 'xid13' / 'xid31' / 'xid43'."""
        if uuid not in self.uuid_index:
            raise NotFound(f"no GPU {uuid} in the twin")
        self.failures.inject_fault(self.uuid_index[uuid], kind, at, duration)

    def advance(self, t: float) -> None:
        """Move the simulation to time ``t`` in steps of at most ``config.step_s``."""
        if self.now is None:
            self.begin(t)
            return
        while self.now < t - 1e-9:
            self._step(min(t, self.now + self.config.step_s))

    def _node_of(self, g: int) -> int:
        return int(self.cluster.node_of[g])

    def _job_event(self, kind: EventKind, job: Job, ts: float, detail: dict[str, object] | None = None) -> None:
        if not self.config.job_events:
            return
        for g in job.gpus[:1]:
            self._node_events[self._node_of(g)].append(Event(
                ts=ts, kind=kind, uuid=self.slots[g].uuid, node=self.nodes[self._node_of(g)].name,
                detail={"job": job.id, "gpus": [self.slots[x].uuid for x in job.gpus], "share": job.share,
                        **(detail or {})}))

    def _step(self, t: float) -> None:
        assert self.now is not None and self.start is not None
        dt = t - self.now
        cl, ph, fm = self.cluster, self.physics, self.failures
        if self._jobs_src is not None:
            cl.queue.extend(self._jobs_src.arrivals(self.now, t))
            for job in cl.finish_due(t):
                self._job_event(EventKind.JOB_END, job, job.end or t, {"state": "done"})
                if self.rng.random() < APP_XID_PROB and job.gpus:
                    self._xid(job.gpus[0], int(self.rng.choice(APP_XIDS)), job.end or t, {"job": job.id})
            for job in cl.schedule(t, ~fm.failed & ~ph.lost):
                self._job_event(EventKind.JOB_START, job, t)
            util = np.minimum(cl.util, 1.0)
            act = Activity(util, np.minimum(cl.sm, util), cl.mem, cl.nvl)
        else:
            assert self._genai is not None
            u, mem_b = self._genai.at(int((t - self.start) // 60))
            act = Activity(u, u * 0.6, mem_b / ph.mem_total, np.zeros(self.n))
        ph.step(dt, act)
        events, failed, _ = fm.step(t, dt, self.start)
        for ev in events:
            g = self.uuid_index[ev.uuid]
            if ev.kind == EventKind.XID and ev.code is not None:
                self._count_xid(g, ev.code)
            self._node_events[self._node_of(g)].append(ev)
        for g in failed:
            for job in cl.interrupt_gpu(g, t):
                self._job_event(EventKind.JOB_INTERRUPTED, job, t, {"reason": "gpu_failure"})
        self.now = t

    def _xid(self, g: int, code: int, ts: float, detail: dict[str, object]) -> None:
        self._count_xid(g, code)
        self._node_events[self._node_of(g)].append(Event(
            ts=ts, kind=EventKind.XID, uuid=self.slots[g].uuid, node=self.nodes[self._node_of(g)].name,
            code=code, detail=detail))

    def _count_xid(self, g: int, code: int) -> None:
        per = self._xid_counts[self._node_of(g)].setdefault(g, {})
        per[code] = per.get(code, 0) + 1
        self._xid_last[g] = code

    # -- output ----------------------------------------------------------------------------------
    def snapshot(self, node: int, ts: float | None = None) -> Snapshot:
        """The snapshot of one node at the current time; drains that node's events."""
        ts = self.now if ts is None else ts
        assert ts is not None
        t0 = time.perf_counter()
        sl = self.node_slices[node]
        samples = self._emit.node(node, sl, ts)
        events, self._node_events[node] = self._node_events[node], []
        lost = self.physics.lost[sl]
        up = {g.uuid: int(not lost[i]) for i, g in enumerate(self.nodes[node].gpus)}
        stat = CollectorStat("twin", time.perf_counter() - t0, True, ts)
        return Snapshot(ts=ts, node=self.nodes[node].name, devices=list(self.devices_by_node[node]),
                        samples=samples, events=events, stats=[stat], up=up)

    def run(self, start: float, duration_s: float, step_s: float = 60.0) -> Iterator[Snapshot]:
        """One Snapshot per node per step, at start, start + step, ... (< start + duration_s)."""
        if step_s <= 0 or duration_s < 0:
            raise ConfigError("step_s must be > 0 and duration_s >= 0")
        if self.now is None:
            self.begin(start)
        n_steps = int(np.ceil(duration_s / step_s - 1e-9))
        for k in range(n_steps):
            t = start + k * step_s
            self.advance(t)
            for i in range(len(self.nodes)):
                yield self.snapshot(i, t)


_SET = {k: Sample.__dict__[k].__set__ for k in ("uuid", "field", "value", "ts", "labels")}
_set_u, _set_f, _set_v, _set_t, _set_l = (_SET[k] for k in ("uuid", "field", "value", "ts", "labels"))
_new = object.__new__


def _make_sample(uuid: str, field_id: str, value: float, ts: float) -> Sample:
    """``Sample(uuid, field_id, value, ts)`` at half the cost: fills the slots directly instead of
    through the frozen dataclass's per-field ``object.__setattr__`` (the hot path of history runs)."""
    s = _new(Sample)
    _set_u(s, uuid)
    _set_f(s, field_id)
    _set_v(s, value)
    _set_t(s, ts)
    _set_l(s, ())
    return s


class _Emitter:
    """Turns the physics arrays into Samples. Work per step is per (node, field), not per GPU."""

    def __init__(self, twin: Twin) -> None:
        self.t = twin
        full = twin.config.fields == "full"
        ph = twin.physics
        fields: list[tuple[str, object, object]] = []  # (field id, getter, supported predicate)

        def add(fid: str, getter: object, pred: object = None) -> None:
            if full or fid in HISTORY_FIELDS:
                fields.append((fid, getter, pred))

        add("clock_sm", lambda: ph.clock_sm)
        add("clock_graphics", lambda: ph.clock_sm)
        add("clock_memory", lambda: np.where(ph.util > 0, ph.mem_max, ph.mem_max * 0.5))
        add("clock_video", lambda: np.where(ph.util > 0, ph.sm_max * 0.85, ph.sm_max * 0.5))
        add("clock_sm_max", lambda: ph.sm_max)
        add("clock_graphics_max", lambda: ph.sm_max)
        add("clock_memory_max", lambda: ph.mem_max)
        add("temperature_gpu", lambda: np.round(ph.temp))
        add("temperature_memory", lambda: np.round(ph.mem_temp), lambda s: s.hbm)
        add("temperature_slowdown", lambda: ph.slowdown)
        add("temperature_shutdown", lambda: ph.shutdown)
        add("temperature_max_operating", lambda: np.array([g.spec.max_operating_c for g in twin.slots]))
        add("power_usage", lambda: np.round(ph.power, 3))
        add("power_limit", lambda: ph.power_limit)
        add("power_limit_enforced", lambda: ph.power_limit)
        add("power_limit_default", lambda: ph.tdp)
        add("energy", lambda: np.round(ph.energy, 3))
        add("pstate", lambda: np.where(ph.util > 0, 0.0, 8.0))
        add("util_gpu", lambda: np.round(ph.util, 2))
        add("util_memory", lambda: np.round(ph.mem_util, 2))
        add("util_encoder", lambda: np.zeros(ph.n), lambda s: s.nvenc)
        add("util_decoder", lambda: np.zeros(ph.n))
        add("fb_total", lambda: ph.mem_total - ph.fb_reserved)
        add("fb_used", lambda: ph.fb_used)
        add("fb_free", lambda: np.maximum(ph.mem_total - ph.fb_reserved - ph.fb_used, 0.0))
        add("fb_reserved", lambda: ph.fb_reserved)
        add("ecc_enabled", lambda: np.ones(ph.n), lambda s: s.ecc)
        for fid, arr in (("ecc_corrected_volatile", "sbe_vol"), ("ecc_uncorrected_volatile", "dbe_vol"),
                         ("ecc_corrected_aggregate", "sbe_agg"), ("ecc_uncorrected_aggregate", "dbe_agg")):
            add(fid, (lambda a=arr: getattr(ph, a)), lambda s: s.ecc)
        for fid, arr in (("remapped_rows_correctable", "rows_corr"), ("remapped_rows_uncorrectable", "rows_unc"),
                         ("row_remap_pending", "row_pending"), ("row_remap_failure", "row_failure")):
            add(fid, (lambda a=arr: getattr(ph, a)), lambda s: s.row_remap)
        for fid, arr in (("retired_pages_sbe", "retired_sbe"), ("retired_pages_dbe", "retired_dbe"),
                         ("retired_pages_pending", "retired_pending")):
            add(fid, (lambda a=arr: getattr(ph, a)), lambda s: not s.row_remap)
        add("clock_event_reasons", lambda: ph.reasons)
        add("throttle_power_seconds", lambda: np.round(ph.throttle_power_s, 3))
        add("throttle_thermal_seconds", lambda: np.round(ph.throttle_thermal_s, 3))
        add("pcie_tx", lambda: ph.pcie_tx)
        add("pcie_rx", lambda: ph.pcie_rx)
        add("pcie_replay", lambda: ph.pcie_replay)
        add("pcie_link_gen", lambda: np.array([float(g.spec.pcie_gen) for g in twin.slots]))
        add("pcie_link_gen_max", lambda: np.array([float(g.spec.pcie_gen) for g in twin.slots]))
        add("pcie_link_width", lambda: ph.link_width)
        add("pcie_link_width_max", lambda: ph.link_width_max)
        add("nvlink_bandwidth", lambda: (ph.nvlink_tx + ph.nvlink_rx).sum(axis=1), lambda s: s.nvlink_links > 0)
        add("mig_mode", lambda: np.zeros(ph.n), lambda s: s.arch in ("ampere", "hopper") and s.hbm)
        add("processes", lambda: twin.cluster.procs.astype(float))
        add("xid_last", lambda: twin._xid_last)
        for fid, arr in (("prof_sm_active", "sm_active"), ("prof_gr_engine_active", "util"),
                         ("prof_sm_occupancy", "occupancy"), ("prof_pipe_tensor_active", "tensor"),
                         ("prof_dram_active", "dram")):
            add(fid, (lambda a=arr: np.round(getattr(ph, a), 3)), lambda s: s.gpm)
        self.fields = fields
        self.full = full
        self._cache: list[list[float]] = []
        self._cache_ts: float | None = None
        self._cache_step: float | None = None
        # Per node and field: (local index, uuid) of the GPUs that support the field.
        self.support: list[list[list[tuple[int, str]]]] = []
        for nd in twin.nodes:
            per_field = []
            for _fid, _get, pred in fields:
                per_field.append([(i, g.uuid) for i, g in enumerate(nd.gpus)
                                  if pred is None or pred(g.spec)])  # type: ignore[operator]
            self.support.append(per_field)

    def _arrays(self, ts: float) -> list[list[float]]:
        """Every field's fleet-wide values, computed once per timestamp."""
        if self._cache_ts != ts or self._cache_step != self.t.now:
            self._cache = [np.asarray(get()).tolist() for _fid, get, _p in self.fields]  # type: ignore[operator]
            self._cache_ts, self._cache_step = ts, self.t.now
        return self._cache

    def node(self, node: int, sl: slice, ts: float) -> list[Sample]:
        t, ph = self.t, self.t.physics
        lost = ph.lost[sl]
        any_lost = bool(lost.any())
        out: list[Sample] = []
        ext = out.extend
        base = sl.start
        mk = _make_sample
        for (fid, _get, _pred), sup, vals in zip(self.fields, self.support[node], self._arrays(ts), strict=True):
            if any_lost:
                ext([mk(u, fid, vals[base + i], ts) for i, u in sup if not lost[i]])
            else:
                ext([mk(u, fid, vals[base + i], ts) for i, u in sup])
        gpus = t.nodes[node].gpus
        for k, per in sorted(t._xid_counts[node].items()):
            if lost[k - sl.start]:
                continue
            uid = gpus[k - sl.start].uuid
            for code, count in sorted(per.items()):
                out.append(Sample(uid, "xid_errors", float(count), ts, (("xid", str(code)),)))
        if not self.full:
            return out
        # Full field set (real-time serving): per-GPU label series.
        for i, g in enumerate(gpus):
            k = sl.start + i
            if lost[i]:
                continue
            out.append(Sample(g.uuid, "info", 1.0, ts, (
                ("cuda_version", CUDA), ("driver_version", DRIVER), ("serial", g.serial),
                ("vbios_version", "96.00.89.00.01"), ("virtualization", "baremetal"))))
            mask = int(ph.reasons[k])
            for reason, bit in REASON_BITS.items():
                out.append(Sample(g.uuid, "clock_event_active", float(bool(mask & bit)), ts, (("reason", reason),)))
            for link in range(int(ph.links[k])):
                lab = (("link", str(link)),)
                out.append(Sample(g.uuid, "nvlink_up", float(not ph.nvlink_down[k, link]), ts, lab))
                out.append(Sample(g.uuid, "nvlink_crc_flit_errors", float(ph.nvlink_crc[k, link]), ts, lab))
                out.append(Sample(g.uuid, "nvlink_tx_bytes", float(ph.nvlink_tx[k, link]), ts, lab))
                out.append(Sample(g.uuid, "nvlink_rx_bytes", float(ph.nvlink_rx[k, link]), ts, lab))
        return out


class TwinSource(Source):
    """The twin as a device source. ``collect(now)`` advances the simulation to
    ``start + (now - first_now) * speed`` and returns one Snapshot of every GPU of the fleet (or of
    one node when ``node`` is given). Snapshot time is simulated time."""

    name = "twin"

    def __init__(self, config: TwinConfig | None = None, start: float | None = None, speed: float = 1.0,
                 node: str | None = None) -> None:
        self.twin = Twin(config or TwinConfig())
        self.start = start
        self.speed = speed
        self._wall0: float | None = None
        names = [n.name for n in self.twin.nodes]
        if node is not None and node not in names:
            raise ConfigError(f"twin.node {node!r} is not a node of the twin; nodes: {', '.join(names)}")
        self._nodes = [names.index(node)] if node is not None else list(range(len(names)))
        self.node = node or "twin"

    def devices(self) -> list[Device]:
        return [d for i in self._nodes for d in self.twin.devices_by_node[i]]

    def sim_time(self, now: float) -> float:
        if self._wall0 is None:
            self._wall0 = now
        base = self.start if self.start is not None else self._wall0
        return base + (now - self._wall0) * self.speed

    def collect(self, now: float) -> Snapshot:
        t0 = time.perf_counter()
        sim = self.sim_time(now)
        if self.twin.now is None:
            self.twin.begin(sim)
        elif sim > self.twin.now:
            self.twin.advance(sim)
        snaps = [self.twin.snapshot(i, sim) for i in self._nodes]
        out = Snapshot(ts=sim, node=self.node, devices=self.devices())
        for s in snaps:
            out.samples.extend(s.samples)
            out.events.extend(s.events)
            out.up.update(s.up)
        out.stats.append(CollectorStat("twin", time.perf_counter() - t0, True, sim))
        return out
