"""What `gpufleet serve` runs beside collection: per-cycle demand bookkeeping, and on their schedules
failure-risk scoring, sliding-window retraining, demand forecasting with the capacity plan, autoscaling
advice and state persistence. Every task reads the history store and the model registry in the data
folder; a task that cannot run yet (no champion model, too little history) says why in the log and
the service keeps going."""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from gpufleet.exporter.errors import GpufleetError, NotFound
from gpufleet.exporter.schema import Sample, Snapshot

if TYPE_CHECKING:
    from gpufleet.service import PeriodicTask, Service

log = logging.getLogger("gpufleet.tasks")
HOUR = 3600.0
DAY = 86400.0
QUANTILES = ("0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95")


class Analytics:
    """The scheduled analytics of one service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.models_dir = service.data_dir / "models"
        self.pending: deque[float] = deque(maxlen=720)
        self.idle: deque[float] = deque(maxlen=720)

    def now(self) -> float:
        snap = self.service.loop.latest()
        return snap.ts if snap is not None else self.service.clock()

    # -- every cycle: demand and analytics samples into the history store ------------------------
    def cycle_samples(self, snapshot: Snapshot) -> Snapshot:
        """Fleet demand (GPUs allocated, GPUs queued) and the current risk, as a snapshot for the store."""
        jobs = self.service.jobs.list()
        allocated = sum(a["share"] for a in self.service.jobs.allocations())
        queued = sum(j["gpus"] for j in jobs if j["state"] == "pending")
        self.pending.append(float(queued))
        idle_gpus = float(len(self.service.fleet.devices)) - allocated
        self.idle.append(max(0.0, idle_gpus))
        ts = snapshot.ts
        samples = [Sample("", "allocated_gpus", float(allocated), ts), Sample("", "queue_pending_gpus", float(queued), ts)]
        samples += self.service.metrics.device_samples(ts)
        return Snapshot(ts=ts, node=snapshot.node, devices=snapshot.devices, samples=samples)

    def history(self, since: float, until: float, step: float) -> Any:
        """Failure-model history: from the fleet's Prometheus / VictoriaMetrics in fleet mode (one panel for
        the whole fleet, read in daily chunks), else from the embedded store."""
        fl = self.service.settings.fleet
        if getattr(self.service, "fleet_mode", False) and fl.url:
            from gpufleet.analytics.fleet.history import open_history, read_history
            from gpufleet.analytics.fleet.reader import selector_labels

            view = getattr(self.service.source, "view", None)
            seen = list(view.names.values()) if view is not None else []
            names = fl.names if fl.names != "auto" else \
                ("dcgm" if seen and seen.count("dcgm") > seen.count("native") else "native")
            with open_history(fl.url, kind=fl.kind, names=names, selector=selector_labels(fl.selector) or None,
                              timeout=fl.timeout) as reader:
                return read_history(reader, since, until, step)
        from gpufleet.analytics.failure import store_history

        store = self.service.store_path
        if store is None:
            return None
        return store_history(store, since=since, until=until, step=step)

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
                self.service.metrics.drift[model.name] = float(psi)
        known = self.service.fleet.devices
        risk = {u: h for u, h in scores.by_uuid().items() if u in known}  # fleet-level series are no GPU
        self.service.fleet.update_risk(risk)
        horizon = self.service.settings.serve.risk_horizon
        self.service.jobs.set_risk({u: h.get(horizon, 0.0) for u, h in risk.items()})
        self.service.cluster.remediate(now)

    def retrain(self, _wall: float) -> None:
        from gpufleet.analytics.failure import train_and_register
        from gpufleet.analytics.registry import Registry

        now = self.now()
        days = self.service.settings.serve.retrain_window_days
        try:
            history = self.history(now - days * DAY, now, 300.0)
            if history is None:
                return
            info = train_and_register(history, Registry(self.models_dir), as_of=now, horizons=(HOUR, DAY))
        except GpufleetError as exc:
            self.service.metrics.note_training("lstm_failure", "skipped")
            log.info("retraining skipped: %s", exc)
            return
        outcome = "promoted" if info.get("promoted") else "kept_champion"
        self.service.metrics.note_training("lstm_failure", outcome)
        log.info("retrained failure model %s: %s (%s)", info["version"], outcome, info.get("reason"))

    # -- demand, capacity, autoscaling -----------------------------------------------------------
    def forecast(self, _wall: float) -> None:
        import pandas as pd

        from gpufleet.allocator.planner import pricebook
        from gpufleet.allocator.planner.evaluate import forecast_paths
        from gpufleet.allocator.planner.optimize import plan_type
        from gpufleet.analytics.forecast import demand_from_history
        from gpufleet.analytics.history.store import StoreReader

        store = self.service.store_path
        if store is None:
            return
        now = self.now()
        end = pd.Timestamp(now, unit="s", tz="UTC").floor("h")
        with StoreReader(store) as reader:
            try:
                frame = demand_from_history(reader, end - pd.Timedelta("30D"), end, "1h")
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
        self.service.fleet.forecast = {"series": [{"series": "total", "generated_at": now, "step_s": HOUR,
                                                   "horizon": "1d", "quantiles": qs, "timestamps": stamps}]}
        book = pricebook.load(None)
        models = {d.model for d in self.service.fleet.devices.values()}
        gpu_type = next((t for t in book.gpus if any(t in m for m in models)), "A100")
        plan = plan_type(book[gpu_type], paths, None, series.to_numpy(dtype=float))  # SAA over the paths
        self.service.fleet.plan = {"generated_at": now, "recommendation": {"by_type": {gpu_type: {
            "reserved": plan.reserved, "term": plan.option, "expected_cost": plan.expected_cost,
            "cost_interval90": list(plan.cost_interval90), "shortfall_probability": plan.shortfall_prob}}}}

    def autoscale(self, _wall: float) -> None:
        from gpufleet.allocator.autoscale import AutoscaleSettings, recommend

        devices = self.service.fleet.devices.values()
        nodes = len({d.node for d in devices})
        per = max(1, len(list(devices)) // max(nodes, 1))
        rec = recommend(list(self.pending), list(self.idle), nodes, self.service.settings.exporter.interval,
                        AutoscaleSettings(gpus_per_node=per))
        self.service.metrics.autoscale["default"] = float(rec.nodes)


def analytics_tasks(service: Service) -> list[PeriodicTask]:
    from gpufleet.service import PeriodicTask

    a = Analytics(service)
    service.analytics = a
    sv = service.settings.serve

    def persist(_wall: float) -> None:
        service.jobs.persist()
        service.engine.save_state()

    tasks: list[Any] = [
        PeriodicTask("score_failure_risk", sv.score_interval, a.score),
        PeriodicTask("retrain_failure_model", sv.retrain_interval, a.retrain),
        PeriodicTask("forecast_demand", sv.forecast_interval, a.forecast),
        PeriodicTask("autoscale_advice", 60.0, a.autoscale),
        PeriodicTask("persist", 60.0, persist),
    ]
    return tasks
