"""`gpufleet demo`: the whole loop on the embedded default, no GPU and no server needed.

The demo drives the real service (:func:`gpufleet.service.build_service`) on the digital twin with a
simulated clock: each step (5 simulated minutes) it collects, then runs what is due. Everything the
service does in `serve` happens here the same way, only faster:

1. The twin (default 4 nodes x 8 GPUs) runs an accelerated two weeks with failures; the service's store
   sink writes its telemetry, with the fleet's demand and risk, into the embedded history store. The
   twin's ground-truth failure labels go in beside it (only a simulation has them).
2. A stream of batch jobs (a daily rhythm) is submitted to the service's job queue; the allocator's
   risk-aware default policy places them on the simulated executor.
3. The service's scheduled tasks run on the simulated clock: the sliding-window retraining of the
   failure predictor (first at the training point: a time split, it never sees the future), risk
   scoring of every GPU every hour (the risk reaches the placer and the alerts), the demand forecast.
4. The service's alert engine watches the telemetry and the risk; notifications go to a local outbox
   (and to any apprise URL given).
5. Then the demo's own part: the backtested demand forecast and the capacity plan per GPU type,
   dashboards, the capacity and cost reports.
6. A short live part (:mod:`gpufleet.demo_live`, about 15 s): real checkpointing training jobs through
   the local executor on twin GPUs, a GPU fault under one of them, and its resume on another GPU from
   the last checkpoint; then a one-screen summary comparing failures predicted with failures that
   happened, and what the resume saved.

Failure rates are accelerated (the calibrated ~5 % per GPU-year gives no failures on 32 GPUs in two
weeks); precursors are the twin's own design, so the predictor's figures here flatter any model. Real
-data figures are in docs/failure-prediction.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpufleet.exporter.schema import EventKind

DAY = 86400.0
HOUR = 3600.0


@dataclass
class DemoConfig:
    out: Path
    nodes: int = 4
    gpus_per_node: int = 8
    days: float = 14.0
    step: float = 300.0
    seed: int = 7
    failure_rate: float = 300.0
    train_after_days: float = 7.0
    notify_urls: list[str] = field(default_factory=list)
    start: float = 1_767_225_600.0  # 2026-01-01T00:00Z: a fixed start keeps runs identical
    load: float = 0.6  # mean share of the fleet's GPUs the demo's job stream asks for
    live: bool = True  # then real checkpointing jobs through the local executor, with a GPU fault


@dataclass
class DemoResult:
    out: Path
    gpus: int
    samples: int
    failures: int
    failures_after_training: int
    predicted: int
    ranked_top3: int
    alarms: int
    model: str | None
    val_metrics: dict[str, Any]
    train_note: str | None
    notifications: int
    alerts_by_rule: dict[str, int]
    forecast: dict[str, Any]
    plan: dict[str, Any]
    jobs: int
    gpu_hours_lost: float
    seconds: float
    paths: dict[str, str]
    risk_horizon: str = "24h"
    live: dict[str, Any] | None = None


def demo_settings(cfg: DemoConfig, **overrides: Any) -> Any:
    """The service's settings for the demo: the twin, the data folder ``cfg.out``, the simulated
    executor, the alert outbox, and the scheduled tasks at the demo's pace (hourly scoring, a daily
    forecast, the first training at the training point)."""
    from gpufleet.settings import load_settings

    outbox = cfg.out / "outbox"
    routes = [{"name": "outbox", "urls": [f"outbox://{outbox.resolve()}"], "continue": True}]
    routes += [{"name": f"route{i}", "urls": [u], "continue": True} for i, u in enumerate(cfg.notify_urls)]
    values: dict[str, Any] = {
        "data_dir": str(cfg.out),
        "exporter": {"source": "twin", "interval": cfg.step},
        "store": {"raw_retention_days": cfg.days + 2},
        "twin": {"nodes": cfg.nodes, "gpus_per_node": cfg.gpus_per_node, "seed": cfg.seed},
        "alerting": {"routes": routes},
        "executor": {"kind": "simulated"},
        "serve": {"score_interval": HOUR, "forecast_interval": DAY, "retrain_interval": cfg.train_after_days * DAY,
                  "retrain_window_days": cfg.days + 1, "metrics_listen": "127.0.0.1:0"},
    }
    for section, vals in overrides.items():
        values.setdefault(section, {}).update(vals)
    return load_settings(None, values)


class JobStream:
    """The demo's users: batch jobs arriving at a daily rhythm (busy afternoons, quiet nights)."""

    MEAN_HOURS = 3.0 * float(np.exp(0.8 ** 2 / 2))  # of the run-time distribution below

    def __init__(self, seed: int, gpus: int, gpus_per_node: int, load: float) -> None:
        self.rng = np.random.default_rng([seed, 11])
        self.sizes = [g for g in (1, 1, 1, 2, 2, 4, 8) if g <= gpus_per_node]
        self.per_hour = load * gpus / (float(np.mean(self.sizes)) * self.MEAN_HOURS)
        self.n = 0

    def arrivals(self, ts: float, step: float) -> list[dict[str, Any]]:
        hour = (ts % DAY) / HOUR
        rate = self.per_hour * (1.0 + 0.6 * np.sin(2 * np.pi * (hour - 9.0) / 24.0)) * step / HOUR
        out = []
        for _ in range(int(self.rng.poisson(rate))):
            self.n += 1
            out.append({"name": f"demo{self.n}", "gpus": int(self.rng.choice(self.sizes)),
                        "duration_s": float(np.clip(self.rng.lognormal(np.log(3 * HOUR), 0.8), 600.0, 2 * DAY)),
                        "checkpoint_interval_s": 1800.0})
        return out


def run(cfg: DemoConfig, progress: Any = None) -> DemoResult:
    """Run the demo; ``progress(stage, fraction)`` is called as it goes."""
    from gpufleet.models.failure_base import parse_horizon
    from gpufleet.models.lstm_failure import LSTMFailure
    from gpufleet.service import build_service
    from gpufleet.simulator.twin import TwinConfig, TwinSource

    began = time.perf_counter()
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda stage, frac: None)
    settings = demo_settings(cfg)
    horizon = settings.serve.risk_horizon
    horizon_s = parse_horizon(horizon)
    source = TwinSource(TwinConfig(nodes=cfg.nodes, gpus_per_node=cfg.gpus_per_node, seed=cfg.seed,
                                   failure_rate_multiplier=cfg.failure_rate, fields="history", step_s=cfg.step,
                                   job_events=True), start=cfg.start)
    clock = [cfg.start]
    svc = build_service(settings, source=source, clock=lambda: clock[0], with_api=False,
                        failure_model=lambda: LSTMFailure(seed=cfg.seed, epochs=6))
    twin = source.twin
    uuids = [g.uuid for g in twin.slots]
    store = next(s.store for s in svc.sinks if getattr(s, "name", "") == "store")
    scoring = svc.scheduler.task("score_failure_risk")
    training = svc.scheduler.task("retrain_failure_model")
    stream = JobStream(cfg.seed, len(uuids), cfg.gpus_per_node, cfg.load)
    risk_log: list[tuple[float, dict[str, float]]] = []
    labels_written = 0
    trained_at: float | None = None
    steps = round(cfg.days * DAY / cfg.step)
    try:
        for k in range(steps):
            ts = cfg.start + k * cfg.step
            clock[0] = ts
            batch = stream.arrivals(ts, cfg.step)
            if batch:
                svc.jobs.submit(batch, "demo", "demo")
            scored, trained = scoring.runs, training.runs
            if training.due(ts) and ts > cfg.start:
                say("training the failure predictor", (ts - cfg.start) / (cfg.days * DAY))
            svc.step(ts)  # collect (per-cycle work), then what is due: scoring, training, forecast...
            if len(twin.labels) > labels_written:  # the twin's ground truth, apart from telemetry
                store.write_labels(twin.labels[labels_written:])
                labels_written = len(twin.labels)
            if training.runs > trained and trained_at is None and svc.stats.training_runs.get(
                    ("lstm_failure", "promoted")):
                trained_at = ts
            if scoring.runs > scored and svc.fleet.risk:
                risk_log.append((ts, {u: svc.fleet.risk.get(u, {}).get(horizon, 0.0) for u in uuids}))
            say("simulating the fleet", (k + 1) / steps)
        counters = dict(svc.jobs.queue.counters)
        jobs = svc.jobs.list()
    finally:
        svc.stop()

    from gpufleet.analytics.registry import Registry

    registry = Registry(out / "models")
    champion = registry.champion()
    meta = registry.meta(champion) if champion is not None else {}
    train_at = trained_at if trained_at is not None else cfg.start + cfg.train_after_days * DAY
    labels = [lab for lab in twin.labels if lab.kind == EventKind.FAILURE]
    after = [lab for lab in labels if lab.ts >= train_at]
    predicted, ranked, alarms = _predicted(after, risk_log, threshold=0.5, window_s=horizon_s)
    say("forecasting demand and planning capacity", 0.0)
    forecast, plan, cap_paths = _capacity(out, cfg, [d.model for d in twin.devices()])
    say("writing dashboards and reports", 0.0)
    outbox = out / "outbox"
    paths = {"history": str(out / "history"), "models": str(out / "models"), "outbox": str(outbox),
             **cap_paths, **_dashboards(out), **_cost(out, jobs, {d.uuid: d.model for d in twin.devices()})}
    notes = sorted(outbox.glob("*.json")) if outbox.exists() else []
    by_rule: dict[str, int] = {}
    seen: set[tuple[str, float | None]] = set()
    for note in notes:  # distinct alerts per rule (labels + firing time); repeat notifications count once
        for a in json.loads(note.read_text()).get("firing", []):
            alabels = a.get("labels", {})
            key = (json.dumps(alabels, sort_keys=True), a.get("fired_at"))
            if key not in seen:
                seen.add(key)
                name = alabels.get("alertname", "?")
                by_rule[name] = by_rule.get(name, 0) + 1
    train_note: str | None = None
    if champion is None:
        train_note = (f"no model promoted: the training at day {cfg.train_after_days:g} found too few failures"
                if cfg.days > cfg.train_after_days else
                f"the predictor trains at day {cfg.train_after_days:g}; this run has {cfg.days:g} days")
    live: dict[str, Any] | None = None
    if cfg.live:
        from gpufleet.demo_live import LiveConfig, LiveDemoError, run_live

        try:
            live = run_live(LiveConfig(out=out, seed=cfg.seed), say)
        except LiveDemoError as exc:  # the accelerated part's outputs stay; the summary says what failed
            live = {"error": str(exc)}
    placed = [j for j in jobs if j.get("started_at") is not None]
    result = DemoResult(
        out=out, gpus=len(uuids), samples=int(store_samples(svc)), failures=len(labels),
        failures_after_training=len(after), predicted=predicted, ranked_top3=ranked, alarms=alarms,
        model=f"lstm_failure {champion}" if champion is not None else None,
        val_metrics=meta.get("metrics", {}) if isinstance(meta.get("metrics"), dict) else {},
        train_note=train_note, notifications=len(notes), alerts_by_rule=by_rule,
        forecast=forecast, plan=plan, jobs=len(placed), gpu_hours_lost=float(counters.get("gpu_hours_lost", 0.0)),
        seconds=time.perf_counter() - began, paths=paths, risk_horizon=horizon, live=live)
    (out / "summary.json").write_text(json.dumps(_jsonable(result.__dict__), indent=2, default=str))
    return result


def store_samples(svc: Any) -> int:
    """Samples the service's store sink wrote in this run."""
    return sum(int(getattr(s, "written_samples", 0)) for s in svc.sinks if getattr(s, "name", "") == "store")


def _predicted(failures: list[Any], risk_log: list[tuple[float, dict[str, float]]], threshold: float,
               top: int = 3, window_s: float = DAY) -> tuple[int, int, int]:
    """Failures preceded by a risk (at the service's horizon) above the threshold in the ``window_s``
    (that horizon) before them, failures whose GPU was among the ``top`` riskiest of the fleet in that
    time, and hourly alarms above the threshold in all."""
    predicted = ranked = 0
    for f in failures:
        before = [(ts, r) for ts, r in risk_log if f.ts - window_s <= ts < f.ts]
        predicted += int(any(r.get(f.uuid, 0.0) > threshold for _, r in before))
        ranked += int(any(f.uuid in sorted(r, key=lambda u: -r[u])[:top] for _, r in before))
    alarms = sum(1 for _, r in risk_log for p in r.values() if p > threshold)
    return predicted, ranked, alarms


def _capacity(out: Path, cfg: DemoConfig, models: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The backtested demand forecast and the capacity plan per GPU type of the fleet (``models``: the
    model of every GPU, exact names priced from the price book). The demo's jobs name no GPU type, so
    their demand is one class any type may serve; the fleet optimiser decides which types to reserve."""
    import pandas as pd

    from gpufleet.analytics.forecast import demand_from_history
    from gpufleet.analytics.history.store import StoreReader

    with StoreReader(out / "history") as reader:
        start = pd.Timestamp(cfg.start, unit="s", tz="UTC")
        frame = demand_from_history(reader, start, start + pd.Timedelta(days=cfg.days), "1h")
    return plan_demand(out / "capacity-report", frame["total"].dropna(), models, cfg.seed)


def plan_demand(folder: Path, series: Any, models: list[str], seed: int = 0,
                ) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """Forecast (backtested, chosen on validation) and plan ``series`` (hourly GPUs wanted, any type) over
    the fleet's GPU ``models``; the report goes to ``folder``."""
    import pandas as pd

    from gpufleet.allocator.planner import pricebook, report
    from gpufleet.allocator.planner.evaluate import forecast_paths
    from gpufleet.allocator.planner.fleet import (
        DemandClass,
        InsufficientHistory,
        class_key,
        fleet_types,
        history_days,
        options_for_history,
        plan_fleet,
    )
    from gpufleet.allocator.planner.optimize import PlanSettings
    from gpufleet.analytics.backtest import evaluate

    try:
        bt, _ = evaluate(series.to_frame("total"), "1h", 24, 24,
                         ("seasonal_naive_daily", "seasonal_mean", "ets", "theta"), n_test=3, n_val=3)
        model, quality = bt["default"], bt["models"].get(bt["default"], {})
    except ValueError:
        bt, model, quality = {"models": {}}, "seasonal_mean", {}
    book = pricebook.load(None)
    tmap = fleet_types(book, models)
    types = tuple(sorted(set(tmap.values())))
    installed = {t: sum(1 for m in models if tmap[m] == t) for t in types}
    days = history_days(series.to_numpy(dtype=float))
    paths, _ = forecast_paths(series, model, 7 * 24, 200, seed)
    forecast = {"model": model, "mase": quality.get("mase"), "coverage80": quality.get("coverage80"),
                "median_next_day": float(np.median(paths[:, :24]))}
    try:
        allowed = options_for_history(days)
    except InsufficientHistory as exc:  # a short demo: no reservation can be justified; say why
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.md").write_text(f"# GPU capacity plan (demo fleet)\n\nNo plan: {exc.reason}.\n")
        return forecast, {"by_type": {t: {"reserved": 0, "option": "on_demand", "installed": n}
                                      for t, n in installed.items()},
                          "currency": book.currency, "note": exc.reason}, {"capacity_report": str(folder / "report.md")}
    note = f"{days:.1f} days of history; terms considered: {', '.join(sorted({o[:2] for o in allowed}))}"
    settings = PlanSettings(allowed_options=allowed)
    demand = DemandClass(class_key(types), types, np.clip(paths, 0, None), series.to_numpy(dtype=float))
    fp = plan_fleet(book, [demand], settings, seed=seed)
    begin = series.index[-1] + pd.Timedelta("1h")
    evs = [report.TypeEvidence(p, series, fp.type_paths[t], begin, model, bt["models"] if quality else {}, [],
                               installed.get(t)) for t, p in fp.by_type.items()]
    written = report.write(folder, evs, book, settings, "GPU capacity plan (demo fleet)",
                           ["The demo fleet's demand comes from the digital twin's accelerated two weeks; its jobs "
                            "name no GPU type, so any type may serve them.", note])
    plan_out: dict[str, Any] = {"by_type": {t: {"reserved": p.reserved, "option": p.option, "installed": installed.get(t),
                                "expected_cost": p.expected_cost, "cost_interval90": list(p.cost_interval90)}
                            for t, p in fp.by_type.items()},
                "expected_cost": fp.expected_cost, "currency": book.currency, "note": note}
    return forecast, plan_out, {"capacity_report": str(written["html"])}


def _dashboards(out: Path) -> dict[str, str]:
    from gpufleet.dashboards.build import write_all

    write_all(out / "grafana")
    return {"dashboards": str(out / "grafana")}


def _cost(out: Path, jobs: list[dict[str, Any]], models: dict[str, str]) -> dict[str, str]:
    """GPU-hours of the service's jobs priced with the price book, by month (the cost report's table)."""
    from gpufleet.allocator.cost import monthly, prices_from_book, write_monthly_csv
    from gpufleet.allocator.queue import Usage

    usage = []
    end_of_run = max((j["finished_at"] or 0.0 for j in jobs), default=0.0)
    for j in jobs:
        if j.get("started_at") is None or not j.get("placement"):
            continue
        end = j["finished_at"] if j.get("finished_at") is not None else max(end_of_run, j["started_at"])
        model = models.get(j["placement"][0], "gpu")
        usage.append(Usage(j["id"], j.get("user") or "demo", j.get("team") or "demo", model.split("-")[0],
                           float(len(j["placement"])), float(j["started_at"]), float(end)))
    book = prices_from_book(None, "on_demand", default_price=2.0)
    rows = monthly(usage, book)
    folder = out / "cost-report"
    folder.mkdir(parents=True, exist_ok=True)
    write_monthly_csv(rows, folder / "cost_monthly.csv", book.currency)
    return {"cost_report": str(folder / "cost_monthly.csv")}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return v
