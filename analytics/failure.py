"""Training and evaluation of failure predictors on windows (twin or stored history).

:func:`twin_history` runs the digital twin in-process (one fleet per seed) and grids its snapshots;
:func:`evaluate_twin` trains every failure model on the training seeds before a split time and
evaluates on held-out seeds after it. :func:`evaluate_windows` computes, per model and horizon:
PR-AUC, ROC-AUC, recall at precision >= 0.5, recall at <= 1 false alarm per 1,000 GPU-days, the
lead time of true alarms, and the GPU-hours of work saved if alarmed GPUs had been drained (using
the jobs that ran on them).

Twin figures flatter every model: we designed the twin's precursors. Reports say so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gpufleet.analytics.datasets import (
    DAY,
    FAILURE_FIELDS,
    HORIZONS,
    HOUR,
    Panel,
    WindowSet,
    coarsen,
    failures_by_uuid,
    make_windows,
    panel_from_snapshots,
    prepare,
    time_split,
)
from gpufleet.analytics.failure_metrics import calibration_table, summarise_binary
from gpufleet.exporter.schema import EventKind
from gpufleet.models.failure_base import FailureModel, horizon_label

TWIN_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed start, never the wall clock


@dataclass(frozen=True)
class JobSpan:
    """A job as the work-saved estimate needs it: which GPUs, from when to when, how many GPUs."""

    uuids: tuple[str, ...]
    start: float
    end: float
    n_gpus: float


@dataclass
class History:
    """A prepared panel, failure times per GPU, and the jobs that ran."""

    panel: Panel
    failures: dict[str, np.ndarray]
    jobs: list[JobSpan] = field(default_factory=list)
    source: str = "twin"
    details: dict[tuple[str, float], dict[str, Any]] = field(default_factory=dict)
    """Twin only: each failure's label detail (mode, precursor, onset) by (uuid, time): for the oracle."""


def twin_history(seed: int, *, nodes: int = 12, gpus_per_node: int = 8, days: float = 30.0, step: float = 300.0,
                 rate_multiplier: float = 100.0, start: float = TWIN_START,
                 progress: Callable[[float], None] | None = None) -> History:
    """Run the twin for ``days`` and return its prepared panel, failure labels and jobs.

    ``rate_multiplier`` accelerates failures (the real rate, ~5 % per GPU-year, gives too few labels
    for a month of a small fleet); precursor shares and lead times are the twin's own.
    """
    from gpufleet.simulator.twin import Twin, TwinConfig

    twin = Twin(TwinConfig(nodes=nodes, gpus_per_node=gpus_per_node, seed=seed, failure_rate_multiplier=rate_multiplier,
                           fields="history", step_s=step))
    duration = days * DAY
    n_nodes = len(twin.nodes)

    def snaps() -> Any:
        for i, s in enumerate(twin.run(start, duration, step)):
            if progress is not None and i % (n_nodes * 288) == 0:
                progress((s.ts - start) / duration)
            yield s

    panel = prepare(panel_from_snapshots(snaps(), start, start + duration, step, FAILURE_FIELDS))
    uuid_of = [g.uuid for g in twin.slots]
    jobs = [JobSpan(tuple(uuid_of[g] for g in j.gpus), float(j.start), float(j.end if j.end is not None else start + duration),
                    float(len(j.gpus) * j.share)) for j in twin.jobs if j.start is not None and j.gpus]
    details = {(e.uuid, float(e.ts)): dict(e.detail) for e in twin.labels if e.kind == EventKind.FAILURE}
    return History(panel, failures_by_uuid(twin.labels), jobs, source=f"twin seed {seed}", details=details)


def with_features(h: History, groups: Sequence[str] | None = None) -> History:
    """The history with the derived failure features (``analytics.failure_features``; ``groups``: only
    those groups, e.g. ``("hist", "health")``) in its panel."""
    from gpufleet.analytics.failure_features import GROUPS, add_features, select

    return History(select(add_features(h.panel), GROUPS if groups is None else groups), h.failures, h.jobs,
                   h.source, h.details)


def concat(histories: Sequence[History]) -> History:
    """One history with every fleet's GPUs (same grid required)."""
    first = histories[0].panel
    for h in histories[1:]:
        if len(h.panel.times) != len(first.times) or h.panel.fields != first.fields:
            raise ValueError("histories must share the time grid and the fields")
    panel = Panel([u for h in histories for u in h.panel.uuids], first.times, first.fields,
                  np.concatenate([h.panel.values for h in histories]),
                  [n for h in histories for n in h.panel.nodes], [m for h in histories for m in h.panel.models])
    failures: dict[str, np.ndarray] = {}
    details: dict[tuple[str, float], dict[str, Any]] = {}
    for h in histories:
        failures.update(h.failures)
        details.update(h.details)
    return History(panel, failures, [j for h in histories for j in h.jobs], " + ".join(h.source for h in histories),
                   details)


def precursor_oracle(ws: WindowSet, details: dict[tuple[str, float], dict[str, Any]],
                     horizon: float = DAY) -> np.ndarray:
    """The score of an observer who reads every precursor perfectly: the twin's ceiling for telemetry models.

    For a window whose GPU's next failure has a precursor that has started by the window's end, it
    knows the mode and the time since onset, and with the twin's lead-time law (uniform per mode,
    ``simulator.failures.PRECURSOR_LEAD_S``) gives P(failure within ``horizon`` | lead > elapsed);
    every other window gets 0 (failures without a precursor give no sign). Not a strict bound: repeat
    faults on a node carry a little more information, which it ignores.
    """
    from gpufleet.simulator.failures import PRECURSOR_LEAD_S

    out = np.zeros(len(ws))
    uu = ws.uuids
    for i, (u, f, t) in enumerate(zip(uu, ws.fail_ts, ws.t_end, strict=True)):
        d = details.get((u, float(f))) if np.isfinite(f) else None
        if not d or not d.get("precursor") or float(d["onset"]) > t:  # type: ignore[arg-type]
            continue
        lo, hi = PRECURSOR_LEAD_S[str(d["mode"])]
        e = t - float(d["onset"])  # type: ignore[arg-type]
        a0 = max(lo, e)
        out[i] = 1.0 if hi <= a0 else float(np.clip((min(hi, e + horizon) - a0) / (hi - a0), 0.0, 1.0)) + 1e-3
    return out


MODEL_SETTINGS: dict[str, dict[str, Any]] = {
    "gbt": {"max_iter": 100, "features": "transfer"},
    "lstm_failure": {"epochs": 15, "hidden": 32, "pool": 6},
}
"""Evaluation settings per failure model (others: their defaults); ``SMALL_SETTINGS`` for tests."""
SMALL_SETTINGS: dict[str, dict[str, Any]] = {
    "gbt": {"max_iter": 30, "features": "transfer"},
    "lstm_failure": {"epochs": 2, "hidden": 8, "pool": 6},
}


def default_models(seed: int = 0, small: bool = False, *, window_s: float = 6 * HOUR,
                   input_step_s: float | None = None) -> dict[str, FailureModel]:
    """Every failure predictor of the registry (``models.failure_models``, kind "failure"), with its
    evaluation settings (``small``: tiny settings for tests), reading ``window_s`` windows."""
    from gpufleet.models import failure_models

    settings = SMALL_SETTINGS if small else MODEL_SETTINGS
    out: dict[str, FailureModel] = {}
    for name, cls in failure_models().items():
        if issubclass(cls, FailureModel):
            out[name] = cls(**settings.get(name, {}), window_s=window_s, input_step_s=input_step_s,  # type: ignore[call-arg]
                            seed=seed)
    return out


def _alarm_outcomes(ws: WindowSet, p: np.ndarray, j: int, thr: float, jobs: list[JobSpan],
                    drain_cost_h: float) -> dict[str, Any]:
    """Lead times and work saved when every window with score >= thr raises an alarm for its GPU."""
    h = ws.horizons[j]
    t_end = ws.t_end
    alarm = p >= thr
    uu = np.array(ws.uuids) if len(ws) else np.zeros(0, dtype=str)
    leads: list[float] = []
    caught: list[tuple[str, float]] = []
    failures = {(u, float(f)) for u, f in zip(uu[ws.y[:, j] == 1], ws.fail_ts[ws.y[:, j] == 1], strict=False)}
    for u, f in sorted(failures):
        sel = (uu == u) & (ws.fail_ts == f) & alarm & (t_end < f) & (f - t_end <= h)
        if sel.any():
            leads.append(float(f - t_end[sel].min()))
            caught.append((u, f))
    by_gpu: dict[str, list[JobSpan]] = {}
    for jb in jobs:
        for u in jb.uuids:
            by_gpu.setdefault(u, []).append(jb)
    saved = 0.0
    for u, f in caught:
        for jb in by_gpu.get(u, []):
            if jb.start <= f < jb.end + 1:
                saved += (f - jb.start) / HOUR * jb.n_gpus  # work since the job started (no checkpoints)
    false_alarms = int((alarm & (ws.y[:, j] == 0)).sum())
    return {"threshold": float(thr), "failures": len(failures), "caught": len(caught), "lead_times_s": leads,
            "lead_time_median_h": float(np.median(leads) / HOUR) if leads else None,
            "false_alarm_windows": false_alarms, "gpu_hours_saved": saved,
            "false_alarm_gpu_hours": false_alarms * drain_cost_h,
            "net_gpu_hours_saved": saved - false_alarms * drain_cost_h}


def evaluate_windows(models: dict[str, FailureModel], train: WindowSet, test: WindowSet, *, stride: float = HOUR,
                     jobs: Sequence[JobSpan] = (), drain_cost_h: float = 1.0,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit every model on ``train``, score ``test``; figures per model and horizon."""
    out: dict[str, Any] = {}
    for name, m in models.items():
        if progress is not None:
            progress(name)
        t0 = time.perf_counter()
        m.fit(train.X, train.mask, train.y, feature_names=train.feature_names, horizons=train.horizons)
        fit_s = time.perf_counter() - t0
        proba = m.predict_proba(test.X, test.mask)
        per_h: dict[str, Any] = {}
        for j, h in enumerate(test.horizons):
            y, p = test.y[:, j], proba.proba[:, j]
            block = summarise_binary(y, p, gpu_days=test.gpu_days(stride))
            thr = block.get("threshold_1_false_alarm_per_1000_gpu_days")
            if thr is not None:
                block["alarms"] = _alarm_outcomes(test, p, j, thr, list(jobs), drain_cost_h)
            block["calibration"] = calibration_table(y, p, 10)
            block["_scores"] = (y, p)
            per_h[horizon_label(h)] = block
        per_h["_fit_seconds"] = fit_s
        out[name] = per_h
    return out


def evaluate_twin(*, train_seeds: Sequence[int] = (1, 2), test_seeds: Sequence[int] = (3,), nodes: int = 12,
                  gpus_per_node: int = 8, days: float = 30.0, step: float = 300.0, rate_multiplier: float = 100.0,
                  window: float = 6 * HOUR, stride: float = HOUR, horizons: Sequence[float] = HORIZONS,
                  split_fraction: float = 0.6, models: dict[str, FailureModel] | None = None, seed: int = 0,
                  input_step: float | None = None, recent: float | None = None,
                  histories: dict[int, History] | None = None, derived: bool | Sequence[str] = False,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train on ``train_seeds`` before the split time, test on the held-out ``test_seeds`` after it.

    ``input_step`` coarsens the panels (e.g. 1800 s for 72 h windows); ``recent`` (e.g. 6 h) makes
    the rows those of ``recent``-long windows whatever ``window`` is, and lets test windows *end*
    ``recent`` after the split (their earlier context belongs to the held-out fleet, which no model
    trains on), so short and long windows are scored on the same GPUs and hours. ``histories``
    reuses twin runs already made (seed -> :func:`twin_history`). ``derived`` adds the event-history,
    deviation and telemetry-health features of ``analytics.failure_features`` (per fleet, before the
    split: each is causal; a sequence of group names adds only those). Off by default: on the validation
    fleet they did not raise the 24 h PR-AUC (docs/failure-prediction.md). The precursor oracle is scored on the same test rows beside the models.
    """
    hist = dict(histories or {})
    for s in (*train_seeds, *test_seeds):
        if s in hist:
            continue
        if progress is not None:
            progress(f"twin seed {s}")
        hist[s] = twin_history(s, nodes=nodes, gpus_per_node=gpus_per_node, days=days, step=step,
                               rate_multiplier=rate_multiplier)
    split = TWIN_START + split_fraction * days * DAY
    if derived:
        groups = None if derived is True else tuple(derived)  # type: ignore[arg-type]
        hist = {s: with_features(h, groups) for s, h in hist.items() if s in (*train_seeds, *test_seeds)}
    train = _windows(concat([hist[s] for s in train_seeds]), window, stride, horizons, input_step, recent)
    test_h = concat([hist[s] for s in test_seeds])
    test_all = _windows(test_h, window, stride, horizons, input_step, recent)
    train, _ = time_split(train, split)
    if recent is None:
        _, test = time_split(test_all, split)
    else:
        test = test_all.subset(np.flatnonzero(test_all.t_end >= split + recent))
    models = models if models is not None else default_models(seed, window_s=window, input_step_s=input_step)
    res = evaluate_windows(models, train, test, stride=stride, jobs=test_h.jobs, progress=progress)
    res["precursor_oracle"] = oracle_figures(test, test_h.details, stride=stride)
    meta = {"source": "twin (designed precursors: flattering)", "train_seeds": list(train_seeds),
            "test_seeds": list(test_seeds), "gpus_per_fleet": nodes * gpus_per_node, "days": days, "step_s": step,
            "rate_multiplier": rate_multiplier, "window_h": window / HOUR, "stride_h": stride / HOUR,
            "input_step_s": input_step or step, "recent_h": None if recent is None else recent / HOUR,
            "split": split, "train_windows": len(train), "test_windows": len(test),
            "train_positives": {horizon_label(h): int(train.y[:, j].sum()) for j, h in enumerate(train.horizons)},
            "test_positives": {horizon_label(h): int(test.y[:, j].sum()) for j, h in enumerate(test.horizons)},
            "failures_train_fleets": int(sum(len(hist[s].failures.get(u, [])) for s in train_seeds
                                             for u in hist[s].panel.uuids)),
            "failures_test_fleets": int(sum(len(hist[s].failures.get(u, [])) for s in test_seeds
                                            for u in hist[s].panel.uuids))}
    return {"dataset": "twin", "meta": meta, "models": res}


def oracle_figures(test: WindowSet, details: dict[tuple[str, float], dict[str, Any]], *,
                   stride: float = HOUR) -> dict[str, Any]:
    """The precursor oracle's figures per horizon on the test rows (the ceiling beside the models)."""
    per_h: dict[str, Any] = {}
    for j, h in enumerate(test.horizons):
        y, p = test.y[:, j], precursor_oracle(test, details, horizon=h)
        block = summarise_binary(y, p, gpu_days=test.gpu_days(stride))
        block["_scores"] = (y, p)
        per_h[horizon_label(h)] = block
    return per_h


def _windows(h: History, window: float, stride: float, horizons: Sequence[float], input_step: float | None = None,
             recent: float | None = None) -> WindowSet:
    panel = coarsen(h.panel, input_step) if input_step else h.panel
    return make_windows(panel, h.failures, window=window, stride=stride, horizons=horizons, recent=recent)


def public(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON view: drop raw score arrays and keys starting with '_'."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if not str(k).startswith("_")}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        if isinstance(v, float) and not np.isfinite(v):
            return None
        return v
    return clean(result)  # type: ignore[no-any-return]


def train_and_register(history: History, registry: Any, *, as_of: float, model: FailureModel | None = None,
                       stride: float = HOUR, horizons: Sequence[float] = HORIZONS,
                       validation_fraction: float = 0.25, challenge_horizon: str = "24h",
                       recent: float | None = None, derived: bool = False) -> dict[str, Any]:
    """Fit on data before the validation slice, store the version, challenge the champion on the slice.

    Only data up to ``as_of`` is used. The validation slice is the last ``validation_fraction`` of the
    span; training windows end (with their longest horizon) before it starts. The window length and the
    input step are the model's hyperparameters (``window_s``, ``input_step_s``, e.g. 72 h at 1800 s), so
    :func:`analytics.scoring.score_panel` feeds it the same.
    """
    from gpufleet.analytics.failure_features import add_features
    from gpufleet.models.lstm_failure import LSTMFailure

    m = model if model is not None else LSTMFailure()
    window, input_step = float(m.window_s), m.input_step_s

    panel = history.panel
    keep = panel.times <= as_of
    panel = Panel(panel.uuids, panel.times[keep], panel.fields, panel.values[:, keep], panel.nodes, panel.models)
    if derived:  # the event-history / deviation / telemetry-health channels (analytics.failure_features)
        panel = add_features(panel)
    if input_step:
        panel = coarsen(panel, input_step)
    failures = {u: f[f <= as_of] for u, f in history.failures.items()}
    span = float(panel.times[-1] - panel.times[0]) if len(panel.times) else 0.0
    usable = tuple(h for h in horizons if h <= span / 4)  # a horizon needs room for training and validation
    if not usable:
        from gpufleet.exporter.errors import InputError

        raise InputError(f"{span / DAY:.1f} days of history are too short for horizons "
                         f"{[horizon_label(h) for h in horizons]} (need 4x the shortest)")
    horizons = usable
    ws = make_windows(panel, failures, window=window, stride=stride, horizons=horizons, recent=recent)
    # validation windows need their longest label horizon inside the data too
    hmax = max(horizons)
    labelled = ws.subset(np.flatnonzero(ws.t_end + hmax <= as_of))
    t0, t1 = float(panel.times[0]), float(panel.times[-1])
    split = t0 + (1 - validation_fraction) * (t1 - hmax - t0)
    train, val = time_split(labelled, split)
    if len(train) == 0 or train.y.sum() == 0:
        from gpufleet.exporter.errors import InputError

        raise InputError(f"not enough labelled history to train: {len(train)} training windows, "
                         f"{int(train.y.sum()) if len(train) else 0} positive (need failures before {split:.0f})")
    m.fit(train.X, train.mask, train.y, feature_names=train.feature_names, horizons=train.horizons)
    metrics: dict[str, Any] = {}
    val_scores = np.zeros(0)
    if len(val):
        proba = m.predict_proba(val.X, val.mask)
        val_scores = proba.proba[:, min(1, proba.proba.shape[1] - 1)]
        for j, h in enumerate(val.horizons):
            metrics[horizon_label(h)] = summarise_binary(val.y[:, j], proba.proba[:, j], gpu_days=val.gpu_days(stride))
    version = registry.save(m, as_of=as_of, data_span=(t0, t1), metrics=metrics, validation_scores=val_scores,
                            extra={"train_windows": len(train), "validation_windows": len(val), "split": split,
                                   "step_s": panel.step, "window_s": window, "stride_s": stride,
                                   "source": history.source})
    have = [horizon_label(h) for h in horizons]
    if challenge_horizon not in have:  # short history: challenge on the longest horizon it supports
        challenge_horizon = have[-1]
    decision = registry.challenge(version, val.X, val.mask, val.y, horizon=challenge_horizon, as_of=as_of) \
        if len(val) else None
    return {"version": version, "metrics": metrics, "train_windows": len(train), "validation_windows": len(val),
            "promoted": decision.promoted if decision else False, "champion": decision.champion if decision else None,
            "reason": decision.reason if decision else "no validation windows"}


def store_history(store_path: Any, *, since: float | None = None, until: float | None = None, step: float = 60.0,
                  fields: Sequence[str] = FAILURE_FIELDS) -> History:
    """Read a history store folder into a prepared panel with its failure labels and jobs."""
    from gpufleet.analytics.datasets import panel_from_reader
    from gpufleet.analytics.history.store import StoreReader
    from gpufleet.exporter.errors import InputError

    reader = StoreReader(store_path)
    lo, hi = reader.store.span()
    if lo is None or hi is None:
        raise InputError("the history store is empty", path=str(store_path))
    since = lo if since is None else since
    until = hi + step if until is None else until
    since = float(np.floor(since / step) * step)
    panel = prepare(panel_from_reader(reader, since, until, step, fields))
    failures = failures_by_uuid(reader.store.labels(since, until))
    return History(panel, failures, [], source=f"store {store_path}")
