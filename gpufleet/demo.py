"""`gpufleet demo`: the whole loop on the embedded default, no GPU and no server needed.

1. The digital twin (default 4 nodes x 8 GPUs) runs an accelerated two weeks with failures; its telemetry,
   failure labels and demand go into the embedded history store.
2. Jobs are placed by the allocator's risk-aware default policy. For the first part of the run the
   risk is unknown (zero); at the training point the LSTM failure predictor is trained on the history so
   far (a time split: it never sees the future), and from then on it scores every GPU every hour and the
   placer keeps long jobs off risky GPUs.
3. The alert engine watches the telemetry and the risk; notifications go to a local outbox (and to any
   apprise URL given).
4. The demand forecaster and the capacity planner run on the fleet's demand; dashboards, the capacity
   and cost reports are written.
5. A one-screen summary compares failures predicted with failures that happened.

Failure rates are accelerated (the calibrated ~5 % per GPU-year gives no failures on 32 GPUs in two
weeks); precursors are the twin's own design, so the predictor's figures here flatter any model. Real
-data figures are in docs/failure-prediction.md.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpufleet.exporter.errors import InputError
from gpufleet.exporter.schema import EventKind, Sample, Snapshot

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


def run(cfg: DemoConfig, progress: Any = None) -> DemoResult:
    """Run the demo; ``progress(stage, fraction)`` is called as it goes."""
    from gpufleet.allocator.policies import make_policy
    from gpufleet.allocator.twin_placer import PolicyPlacer
    from gpufleet.analytics.datasets import FAILURE_FIELDS, panel_from_snapshots, prepare
    from gpufleet.analytics.scoring import score_panel
    from gpufleet.exporter.store import HistoryStore
    from gpufleet.simulator.twin import Twin, TwinConfig

    began = time.perf_counter()
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda stage, frac: None)

    risk = np.zeros(cfg.nodes * cfg.gpus_per_node)
    placer = PolicyPlacer(make_policy("default", seed=cfg.seed), risk=lambda: risk)
    twin = Twin(TwinConfig(nodes=cfg.nodes, gpus_per_node=cfg.gpus_per_node, seed=cfg.seed,
                           failure_rate_multiplier=cfg.failure_rate, fields="history", step_s=cfg.step,
                           job_events=True), placer=placer)
    uuids = [g.uuid for g in twin.slots]
    engine, outbox = _alert_engine(out, cfg.notify_urls)
    store = HistoryStore(out / "history", raw_retention_days=cfg.days + 2, fsync=False)
    recent: deque[Snapshot] = deque()
    window_s = 6 * HOUR
    train_at = cfg.start + cfg.train_after_days * DAY
    model: Any = None
    version: str | None = None
    train_info: dict[str, Any] = {}
    risk_log: list[tuple[float, dict[str, float]]] = []
    n_samples = 0
    n_nodes = len(twin.nodes)
    last_score = -1e18
    labels_written = 0
    duration = cfg.days * DAY
    try:
        for i, snap in enumerate(twin.run(cfg.start, duration, cfg.step)):
            ts = snap.ts
            extra: list[Sample] = []
            if i % n_nodes == n_nodes - 1:  # once per step: fleet demand, risk scoring, training, alerts
                extra = _demand_samples(twin, ts)
                if len(twin.labels) > labels_written:  # ground truth goes in as it happens, apart from telemetry
                    store.write_labels(twin.labels[labels_written:])
                    labels_written = len(twin.labels)
                if model is None and ts >= train_at:
                    store.flush()
                    say("training the failure predictor", (ts - cfg.start) / duration)
                    try:
                        model, version, train_info = _train(out, store, ts, cfg.seed)
                    except InputError as exc:  # too few failures so far: try again a simulated day later
                        train_info = {"error": str(exc)}
                        train_at = ts + DAY
                if model is not None and ts - last_score >= HOUR and recent:
                    last_score = ts
                    panel = prepare(panel_from_snapshots(list(recent), ts - window_s, ts + cfg.step, cfg.step,
                                                         FAILURE_FIELDS))
                    scores = score_panel(model, panel, version=version)
                    by_uuid = scores.by_uuid()
                    risk[:] = [by_uuid.get(u, {}).get("24h", 0.0) for u in uuids]
                    risk_log.append((ts, {u: by_uuid.get(u, {}).get("24h", 0.0) for u in uuids}))
                    extra += scores.samples()
                say("simulating the fleet", (ts - cfg.start + cfg.step) / duration)
            snap_out = Snapshot(ts=ts, node=snap.node, devices=snap.devices, samples=[*snap.samples, *extra],
                                events=snap.events, stats=snap.stats, up=snap.up)
            store.write(snap_out)
            n_samples += len(snap_out.samples)
            recent.append(snap_out)
            while recent and recent[0].ts < ts - window_s - cfg.step:
                recent.popleft()
            if i % n_nodes == 0 or extra:
                engine.step([snap_out], now=ts)
        store.write_labels(twin.labels[labels_written:])
    finally:
        store.close()
    engine.save_state(force=True)

    labels = [lab for lab in twin.labels if lab.kind == EventKind.FAILURE]
    after = [lab for lab in labels if lab.ts >= train_at]
    predicted, ranked, alarms = _predicted(after, risk_log, threshold=0.5)
    say("forecasting demand and planning capacity", 0.0)
    forecast, plan, cap_paths = _capacity(out, cfg)
    say("writing dashboards and reports", 0.0)
    paths = {"history": str(out / "history"), "models": str(out / "models"), "outbox": str(outbox),
             **cap_paths, **_dashboards(out), **_cost(out, twin)}
    notes = sorted(outbox.glob("*.json")) if outbox.exists() else []
    by_rule: dict[str, int] = {}
    seen: set[tuple[str, float | None]] = set()
    for note in notes:  # distinct alerts per rule (labels + firing time); repeat notifications count once
        for a in json.loads(note.read_text()).get("firing", []):
            labels = a.get("labels", {})
            key = (json.dumps(labels, sort_keys=True), a.get("fired_at"))
            if key not in seen:
                seen.add(key)
                name = labels.get("alertname", "?")
                by_rule[name] = by_rule.get(name, 0) + 1
    result = DemoResult(
        out=out, gpus=len(uuids), samples=n_samples, failures=len(labels), failures_after_training=len(after),
        predicted=predicted, ranked_top3=ranked, alarms=alarms, model=(train_info.get("model") if train_info else None),
        val_metrics=train_info.get("metrics", {}), train_note=train_info.get("error"), notifications=len(notes), alerts_by_rule=by_rule,
        forecast=forecast, plan=plan, jobs=len(twin.jobs),
        gpu_hours_lost=float(sum(getattr(j, "lost_gpu_hours", 0.0) for j in twin.jobs)),
        seconds=time.perf_counter() - began, paths=paths)
    (out / "summary.json").write_text(json.dumps(_jsonable(result.__dict__), indent=2, default=str))
    return result


def _alert_engine(out: Path, urls: list[str]) -> tuple[Any, Path]:
    from gpufleet.alerting.setup import build_engine
    from gpufleet.settings import AlertingSettings

    outbox = out / "outbox"
    routes = [{"name": "outbox", "urls": [f"outbox://{outbox.resolve()}"], "continue": True}]
    routes += [{"name": f"route{i}", "urls": [u], "continue": True} for i, u in enumerate(urls)]
    section = AlertingSettings.model_validate({"routes": routes, "state_dir": str(out / "alerting")})
    return build_engine(section, out), outbox


def _demand_samples(twin: Any, ts: float) -> list[Sample]:
    """Fleet demand now: GPUs allocated (shares summed) and GPUs asked for by queued jobs."""
    allocated = float(np.sum(twin.cluster.used))
    queued = float(sum(j.n_gpus * j.share for j in twin.cluster.queue))
    return [Sample("", "allocated_gpus", allocated, ts), Sample("", "queue_pending_gpus", queued, ts)]


def _train(out: Path, store: Any, as_of: float, seed: int) -> tuple[Any, str | None, dict[str, Any]]:
    from gpufleet.analytics.failure import store_history, train_and_register
    from gpufleet.analytics.registry import Registry
    from gpufleet.models.lstm_failure import LSTMFailure

    history = store_history(out / "history", until=as_of, step=300.0)
    registry = Registry(out / "models")
    info = train_and_register(history, registry, as_of=as_of, model=LSTMFailure(seed=seed, epochs=6),
                              horizons=(HOUR, DAY))
    model = registry.load(info["version"])
    info["model"] = f"{model.name} {info['version']}"
    return model, info["version"], info


def _predicted(failures: list[Any], risk_log: list[tuple[float, dict[str, float]]], threshold: float,
               top: int = 3) -> tuple[int, int, int]:
    """Failures preceded by a 24 h risk above the threshold in the 24 h before them, failures whose GPU was
    among the ``top`` riskiest of the fleet in that time, and hourly alarms above the threshold in all."""
    predicted = ranked = 0
    for f in failures:
        before = [(ts, r) for ts, r in risk_log if f.ts - DAY <= ts < f.ts]
        predicted += int(any(r.get(f.uuid, 0.0) > threshold for _, r in before))
        ranked += int(any(f.uuid in sorted(r, key=lambda u: -r[u])[:top] for _, r in before))
    alarms = sum(1 for _, r in risk_log for p in r.values() if p > threshold)
    return predicted, ranked, alarms


def _capacity(out: Path, cfg: DemoConfig) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    import pandas as pd

    from gpufleet.allocator.planner import pricebook, report
    from gpufleet.allocator.planner.evaluate import forecast_paths
    from gpufleet.allocator.planner.optimize import PlanSettings, plan_type
    from gpufleet.analytics.backtest import evaluate
    from gpufleet.analytics.forecast import demand_from_history
    from gpufleet.analytics.history.store import StoreReader

    with StoreReader(out / "history") as reader:
        start = pd.Timestamp(cfg.start, unit="s", tz="UTC")
        frame = demand_from_history(reader, start, start + pd.Timedelta(days=cfg.days), "1h")
    series = frame["total"].dropna()
    try:
        bt, _ = evaluate(series.to_frame("total"), "1h", 24, 24,
                         ("seasonal_naive_daily", "seasonal_mean", "ets", "theta"), n_test=3, n_val=3)
        model, quality = bt["default"], bt["models"].get(bt["default"], {})
    except ValueError:
        model, quality = "seasonal_mean", {}
    book = pricebook.load(None)
    price = book["A100"]
    settings = PlanSettings()
    paths, _ = forecast_paths(series, model, 7 * 24, 200, cfg.seed)
    plan = plan_type(price, paths, settings, series.to_numpy(dtype=float))
    ev = report.TypeEvidence(plan, series, paths, series.index[-1] + pd.Timedelta("1h"), model,
                             bt["models"] if quality else {}, [])
    written = report.write(out / "capacity-report", [ev], book, settings, "GPU capacity plan (demo fleet)",
                           ["The demo fleet's demand comes from the digital twin's accelerated two weeks."])
    forecast = {"model": model, "mase": quality.get("mase"), "coverage80": quality.get("coverage80"),
                "median_next_day": float(np.median(paths[:, :24]))}
    plan_out = {"gpu_type": plan.gpu_type, "reserved": plan.reserved, "option": plan.option,
                "expected_cost": plan.expected_cost, "cost_interval90": list(plan.cost_interval90),
                "currency": book.currency}
    return forecast, plan_out, {"capacity_report": str(written["html"])}


def _dashboards(out: Path) -> dict[str, str]:
    from gpufleet.dashboards.build import write_all

    write_all(out / "grafana")
    return {"dashboards": str(out / "grafana")}


def _cost(out: Path, twin: Any) -> dict[str, str]:
    """GPU-hours of the twin's jobs priced with the price book, by month (the cost report's table)."""
    from gpufleet.allocator.cost import monthly, prices_from_book, write_monthly_csv
    from gpufleet.allocator.queue import Usage

    usage = []
    for j in twin.jobs:
        if j.start is None or not j.gpus:
            continue
        end = j.end if j.end is not None else twin.now
        model = twin.slots[j.gpus[0]].spec.model
        usage.append(Usage(f"job{j.id}" if hasattr(j, "id") else "job", "demo", "demo", model.split("-")[0],
                           float(len(j.gpus) * j.share), float(j.start), float(end)))
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
