"""The service's own exported metrics: failure risk, forecasts, capacity plan, autoscaling advice, queue
and allocation, idle allocated GPUs, alerts and model runs — every one a catalogue row."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gpufleet.allocator.idle import IdleDetector
from gpufleet.api.backend import FleetView
from gpufleet.exporter.catalogue import Catalogue, catalogue
from gpufleet.exporter.schema import Sample, Snapshot
from gpufleet.exporter.sinks.prometheus import Family, build_families, render_text
from gpufleet.settings import AllocatorSettings

if TYPE_CHECKING:
    from gpufleet.api.audit import AuditLog
    from gpufleet.jobs import QueueJobService


@dataclass
class ModelStats:
    """What the scheduled analytics report for /metrics: training runs by outcome, score drift per model,
    the autoscaling advice per pool."""

    training_runs: dict[tuple[str, str], int] = field(default_factory=dict)
    drift: dict[str, float] = field(default_factory=dict)
    autoscale: dict[str, float] = field(default_factory=dict)

    def note_training(self, model: str, outcome: str) -> None:
        self.training_runs[(model, outcome)] = self.training_runs.get((model, outcome), 0) + 1


class ServiceMetrics:
    def __init__(self, allocator: AllocatorSettings, *, latest: Callable[[], Snapshot | None], view: FleetView,
                 jobs: QueueJobService, engine: Any, stats: ModelStats, audit: AuditLog | None = None,
                 cat: Catalogue | None = None) -> None:
        self.latest = latest
        self.view = view
        self.jobs = jobs
        self.engine = engine
        self.stats = stats
        self.audit = audit
        self.cat = cat or catalogue()
        self.idle = IdleDetector(threshold=allocator.idle_threshold, window_s=allocator.idle_window_s)
        self._idle_samples: list[Sample] = []

    @property
    def training_runs(self) -> dict[tuple[str, str], int]:
        return self.stats.training_runs

    @property
    def drift(self) -> dict[str, float]:
        return self.stats.drift

    @property
    def autoscale(self) -> dict[str, float]:
        return self.stats.autoscale

    # -- device-scope analytics samples (also fed to the alert engine) ---------------------------
    def device_samples(self, ts: float) -> list[Sample]:
        fleet = self.view
        out = [Sample(uuid, "failure_risk", p, ts, (("horizon", h),))
               for uuid, horizons in fleet.risk.items() for h, p in horizons.items()]
        return out + self._idle_samples

    def fleet_samples(self, ts: float) -> list[Sample]:
        """Fleet-scope values as samples with an empty uuid (for the alert engine)."""
        out = []
        for labels, value in self._forecast_values():
            out.append(Sample("", "demand_forecast", value, ts, labels))
        for series, cap in self._capacity().items():
            out.append(Sample("", "capacity_gpus", cap, ts, (("series", series),)))
        for prio, wait in self._queue_waits(ts).items():
            out.append(Sample("", "queue_wait_seconds", wait, ts, (("priority", prio),)))
        for model, psi in self.drift.items():
            out.append(Sample("", "model_score_drift", psi, ts, (("model", model),)))
        return out

    def with_analytics(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot plus the analytics samples, for the alert engine."""
        extra = self.device_samples(snapshot.ts) + self.fleet_samples(snapshot.ts)
        return Snapshot(ts=snapshot.ts, node=snapshot.node, devices=snapshot.devices,
                        samples=[*snapshot.samples, *extra], events=snapshot.events, stats=snapshot.stats,
                        up=snapshot.up)

    def update_idle(self, snapshot: Snapshot) -> None:
        """Feed the allocator's idle detector and keep this cycle's ``gpu_allocated_idle`` samples."""
        self.idle.observe_snapshot(snapshot)
        allocated = {a["uuid"]: a["job_id"] for a in self.jobs.allocations()}
        self._idle_samples = self.idle.samples(allocated, snapshot.ts)

    # -- exposition ------------------------------------------------------------------------------
    def render(self) -> bytes:
        snap = self.latest()
        ts = snap.ts if snap is not None else time.time()
        fams: list[Family] = []
        if snap is not None:
            analytics = Snapshot(ts=ts, node=snap.node, devices=snap.devices, samples=self.device_samples(ts))
            # only the analytics families: identity (gpu_up, gpu_info) is the exporter sink's
            own = {self.cat.field(f).name for f in ("failure_risk", "gpu_allocated_idle")}
            fams += [f for f in build_families(analytics, "native", self.cat) if f.name in own]
        fams += self._fleet_families(ts)
        return render_text([f for f in fams if f.samples]).encode()

    def _fam(self, field_id: str) -> Family:
        m = self.cat.field(field_id)
        return Family(m.name, "gauge" if m.type == "info" else m.type, m.help)

    def _add(self, fams: list[Family], field_id: str, rows: Iterable[tuple[tuple[tuple[str, str], ...], float]]) -> None:
        f = self._fam(field_id)
        f.samples.extend(("", (), labels, float(v)) for labels, v in rows)
        fams.append(f)

    def _forecast_values(self) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        rows: list[tuple[tuple[tuple[str, str], ...], float]] = []
        for series in self.view.forecast.get("series", []):
            horizon = series.get("horizon", "1d")
            for q, values in series.get("quantiles", {}).items():
                if values:
                    rows.append(((("horizon", str(horizon)), ("quantile", str(q)), ("series", str(series["series"]))),
                                 float(max(values))))
        return rows

    def _capacity(self) -> dict[str, float]:
        devices = self.view.device_list()
        return {"total": float(sum(1 for d in devices if not d.is_mig))}

    def _queue_waits(self, now: float) -> dict[str, float]:
        waits: dict[str, float] = {}
        for j in self.jobs.list():
            if j["state"] == "pending":
                waits[j["priority"]] = max(waits.get(j["priority"], 0.0), now - j["submitted_at"])
        return waits

    def _fleet_families(self, ts: float) -> list[Family]:
        fams: list[Family] = []
        self._add(fams, "demand_forecast", self._forecast_values())
        self._add(fams, "capacity_gpus", [((("series", s),), v) for s, v in self._capacity().items()])
        plan = self.view.plan.get("recommendation", {})
        self._add(fams, "reserved_recommended", [((("gpu_type", t), ("term", str(r.get("term", "")))),
                                                  float(r.get("reserved", 0)))
                                                 for t, r in plan.get("by_type", {}).items()])
        self._add(fams, "autoscale_recommended_nodes", [((("pool", p),), v) for p, v in self.autoscale.items()])
        jobs = self.jobs.list()
        pending: dict[str, int] = {}
        for j in jobs:
            if j["state"] == "pending":
                pending[j["priority"]] = pending.get(j["priority"], 0) + 1
        self._add(fams, "queue_pending_jobs", [((("priority", p),), n) for p, n in pending.items()])
        self._add(fams, "queue_pending_gpus", [((), sum(j["gpus"] for j in jobs if j["state"] == "pending"))])
        self._add(fams, "queue_wait_seconds", [((("priority", p),), w) for p, w in self._queue_waits(ts).items()])
        self._add(fams, "running_jobs", [((), sum(1 for j in jobs if j["state"] == "running"))])
        q = self.jobs.queue
        by_type: dict[str, float] = {}
        for a in self.jobs.allocations():
            d = self.view.devices.get(a["uuid"])
            key = d.model if d else "unknown"
            by_type[key] = by_type.get(key, 0.0) + a["share"]
        self._add(fams, "allocated_gpus", [((("gpu_type", t),), v) for t, v in by_type.items()])
        self._add(fams, "allocation_ratio", [((), q.state.allocation_ratio())])
        cap = q.state.capacity_milli
        frag = q.state.fragmentation_milli() / cap if cap else 0.0
        self._add(fams, "fragmentation_ratio", [((), frag)])
        self._add(fams, "preemptions", [((), q.counters.get("preemptions", 0))])
        self._add(fams, "gpu_time_lost", [((), 3600.0 * q.counters.get("gpu_hours_lost", 0.0))])
        self._add(fams, "alerts_firing", [((("alertname", n), ("severity", s)), c)
                                          for (n, s), c in self.engine.firing_counts().items()])
        self._add(fams, "model_training_runs", [((("model", m), ("outcome", o)), c)
                                                for (m, o), c in self.training_runs.items()])
        self._add(fams, "model_score_drift", [((("model", m),), v) for m, v in self.drift.items()])
        audit = self.audit
        if audit is not None and audit.last_checkpoint_seq is not None:
            self._add(fams, "audit_checkpoint_seq", [((), audit.last_checkpoint_seq)])
        return fams

    def summary(self) -> dict[str, Any]:
        return {"idle_gpus": sum(1 for s in self._idle_samples if s.value), "training_runs": dict(self.training_runs)}
