"""What `gpufleet serve` runs beside collection: per-cycle demand bookkeeping, and on their schedules
failure-risk scoring, sliding-window retraining, demand forecasting with the capacity plan, autoscaling
advice and state persistence. Every task reads history through one reader callable (the embedded store,
or the fleet's Prometheus / VictoriaMetrics) and the model registry in the data folder; a task that
cannot run yet (no champion model, too little history) says why in the log and the service keeps going.

``Analytics`` gets what it works with, each narrow: the settings, the latest snapshot and the clock, the
fleet view it writes risk / forecast / plan into, the job service it hands risk to, the model stats it
reports to /metrics, and what runs after each scoring (the cluster remediation)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gpufleet.api.backend import FleetView
from gpufleet.exporter.errors import GpufleetError, NotFound
from gpufleet.exporter.schema import Sample, Snapshot
from gpufleet.metrics import ModelStats
from gpufleet.scheduler import PeriodicTask
from gpufleet.settings import FleetSettings, Settings

if TYPE_CHECKING:
    from gpufleet.jobs import QueueJobService

log = logging.getLogger("gpufleet.tasks")
HOUR = 3600.0
DAY = 86400.0
QUANTILES = ("0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95")

History = Callable[[float, float, float], Any]  # (since, until, step) -> FailureHistory | None


def store_history_reader(store: Path | None) -> History:
    """Failure-model history from the embedded store (None when there is no store)."""

    def read(since: float, until: float, step: float) -> Any:
        from gpufleet.analytics.failure import store_history

        if store is None:
            return None
        return store_history(store, since=since, until=until, step=step)
    return read


def fleet_history_reader(fl: FleetSettings, names_seen: Callable[[], list[str]]) -> History:
    """Fleet mode: one panel for the whole fleet from its Prometheus / VictoriaMetrics, read in daily
    chunks; ``names_seen`` (the fleet reader's per-node naming) decides ``auto``."""

    def read(since: float, until: float, step: float) -> Any:
        from gpufleet.analytics.fleet.history import open_history, read_history
        from gpufleet.analytics.fleet.reader import selector_labels

        seen = names_seen()
        names = fl.names if fl.names != "auto" else \
            ("dcgm" if seen and seen.count("dcgm") > seen.count("native") else "native")
        with open_history(fl.url or "", kind=fl.kind, names=names, selector=selector_labels(fl.selector) or None,
                          timeout=fl.timeout) as reader:
            return read_history(reader, since, until, step)
    return read


class Analytics:
    """The scheduled analytics of one service."""

    def __init__(self, settings: Settings, *, models_dir: Path, store_path: Path | None, history: History,
                 latest: Callable[[], Snapshot | None], clock: Callable[[], float], fleet: FleetView,
                 jobs: QueueJobService, stats: ModelStats,
                 device_samples: Callable[[float], list[Sample]] = lambda ts: [],
                 after_scoring: Callable[[float], None] = lambda now: None,
                 pending: deque[float] | None = None,
                 failure_model: Callable[[], Any] | None = None,
                 external_demand: Callable[[], list[tuple[str, str, float]]] = lambda: []) -> None:
        self.settings = settings
        self.models_dir = models_dir
        self.store_path = store_path
        self.history = history
        self.latest = latest
        self.clock = clock
        self.fleet = fleet
        self.jobs = jobs
        self.stats = stats
        self.device_samples = device_samples
        self.after_scoring = after_scoring
        self.failure_model = failure_model  # what retraining fits (default: the LSTM predictor's defaults)
        self.external_demand = external_demand  # (source, GPU type, GPUs) pending in Slurm / Kubernetes
        self.pending: deque[float] = pending if pending is not None else deque(maxlen=720)
        self.idle: deque[float] = deque(maxlen=720)

    def now(self) -> float:
        snap = self.latest()
        return snap.ts if snap is not None else self.clock()

    # -- every cycle: demand and analytics samples into the history store ------------------------
    def cycle_samples(self, snapshot: Snapshot) -> Snapshot:
        """Fleet demand (GPUs allocated, GPUs queued, GPUs pending in Slurm / Kubernetes outside the queue)
        and the current risk, as a snapshot for the store."""
        jobs = self.jobs.list()
        allocated = sum(a["share"] for a in self.jobs.allocations())
        queued = sum(j["gpus"] for j in jobs if j["state"] == "pending")
        external = self.external_demand()
        self.pending.append(float(queued) + sum(v for _, _, v in external))
        idle_gpus = float(len(self.fleet.devices)) - allocated
        self.idle.append(max(0.0, idle_gpus))
        ts = snapshot.ts
        samples = [Sample("", "allocated_gpus", float(allocated), ts), Sample("", "queue_pending_gpus", float(queued), ts)]
        samples += [Sample("", "external_pending_gpus", float(v), ts, (("gpu_type", kind), ("source", src)))
                    for src, kind, v in external]
        samples += self.device_samples(ts)
        return Snapshot(ts=ts, node=snapshot.node, devices=snapshot.devices, samples=samples)

    # -- failure risk ------------------------------------------------------------------------------
    def score(self, _wall: float) -> None:
        from gpufleet.analytics.registry import Registry
        from gpufleet.analytics.scoring import score_panel

        registry = Registry(self.models_dir)
        try:
            model = registry.load()
        except NotFound:
            log.info("no champion failure model yet: risk scoring waits for the first training")
            return
        now = self.now()
        history = self.history(now - 7 * HOUR, now, 60.0)
        if history is None:
            return
        champion = registry.champion()
        scores = score_panel(model, history.panel, version=champion)
        if champion is not None and len(scores.risk):
            from gpufleet.analytics.registry import drift

            reference = registry.meta(champion).get("score_reference", [])
            psi = drift(reference, scores.risk[:, min(1, scores.risk.shape[1] - 1)])["psi"]
            if psi is not None:
                self.stats.drift[model.name] = float(psi)
        known = self.fleet.devices
        risk = {u: h for u, h in scores.by_uuid().items() if u in known}  # fleet-level series are no GPU
        self.fleet.update_risk(risk)
        horizon = self.settings.serve.risk_horizon
        from gpufleet.models.failure_base import Risk

        self.jobs.set_risk({u: Risk.of(h.get(horizon, 0.0), horizon) for u, h in risk.items()})
        self.after_scoring(now)

    def retrain(self, _wall: float) -> None:
        from gpufleet.analytics.failure import train_and_register
        from gpufleet.analytics.registry import Registry

        now = self.now()
        days = self.settings.serve.retrain_window_days
        try:
            history = self.history(now - days * DAY, now, 300.0)
            if history is None:
                return
            model = self.failure_model() if self.failure_model is not None else None
            info = train_and_register(history, Registry(self.models_dir), as_of=now, model=model,
                                      horizons=(HOUR, DAY))
        except GpufleetError as exc:
            self.stats.note_training("lstm_failure", "skipped")
            log.info("retraining skipped: %s", exc)
            return
        outcome = "promoted" if info.get("promoted") else "kept_champion"
        self.stats.note_training("lstm_failure", outcome)
        log.info("retrained failure model %s: %s (%s)", info["version"], outcome, info.get("reason"))

    # -- demand, capacity, autoscaling -----------------------------------------------------------
    def forecast(self, _wall: float) -> None:
        import pandas as pd

        from gpufleet.allocator.planner import pricebook
        from gpufleet.allocator.planner.evaluate import forecast_paths
        from gpufleet.analytics.forecast import DEMAND_FIELDS, demand_from_history
        from gpufleet.analytics.history.store import StoreReader

        store = self.store_path
        if store is None:
            return
        now = self.now()
        end = pd.Timestamp(now, unit="s", tz="UTC").floor("h")
        with StoreReader(store) as reader:
            try:
                frame = demand_from_history(reader, end - pd.Timedelta("30D"), end, "1h",  # + Slurm / k8s pending
                                            fields=(*DEMAND_FIELDS, "external_pending_gpus"))
            except GpufleetError as exc:
                log.info("no demand forecast yet: %s", exc)
                return
        series = frame["total"].dropna()
        if len(series) < 3 * 24:
            log.info("no demand forecast yet: %d hours of demand history, need 72", len(series))
            return
        paths, _ = forecast_paths(series, "combo", 7 * 24, 200, 0)  # intervals from its own recent errors
        day = paths[:, :24]
        qs = {q: np.quantile(day, float(q), axis=0).round(3).tolist() for q in QUANTILES}
        stamps = [float((series.index[-1] + pd.Timedelta(hours=h + 1)).timestamp()) for h in range(24)]
        self.fleet.forecast = {"series": [{"series": "total", "generated_at": now, "step_s": HOUR,
                                                   "horizon": "1d", "quantiles": qs, "timestamps": stamps}]}
        from gpufleet.allocator.planner.fleet import plan_service

        with self.jobs.lock:  # per GPU type (exact model names), from the demand of the jobs allowed on each
            records = list(self.jobs.queue.jobs.values())
        try:
            self.fleet.plan = plan_service(pricebook.load(None), [d.model for d in self.fleet.devices.values()],
                                           records, series, now)
        except GpufleetError as exc:
            log.warning("no capacity plan: %s", exc)

    def autoscale(self, _wall: float) -> None:
        from gpufleet.allocator.autoscale import AutoscaleSettings, recommend

        devices = self.fleet.device_list()
        nodes = len({d.node for d in devices})
        per = max(1, len(devices) // max(nodes, 1))
        rec = recommend(list(self.pending), list(self.idle), nodes, self.settings.exporter.interval,
                        AutoscaleSettings(gpus_per_node=per))
        self.stats.autoscale["default"] = float(rec.nodes)

    def tasks(self) -> list[PeriodicTask]:
        """Its scheduled tasks; retraining and the demand forecast are long (they run off the scheduling
        thread, so they never delay a scoring)."""
        sv = self.settings.serve
        return [
            PeriodicTask("score_failure_risk", sv.score_interval, self.score),
            PeriodicTask("retrain_failure_model", sv.retrain_interval, self.retrain, long=True),
            PeriodicTask("forecast_demand", sv.forecast_interval, self.forecast, long=True),
            PeriodicTask("autoscale_advice", 60.0, self.autoscale),
        ]
