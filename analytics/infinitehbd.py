"""StepFun InfiniteHBD fault trace (``../shared/data/infinitehbd-faults``): loader and event-history backtest.

The trace lists fault starts/ends per node over 348 days (``event_time`` in days). Only nodes that
faulted appear (231 of about 400 servers); the backtest adds ``fleet_nodes - 231`` silent nodes so
that the population is the fleet, not "nodes that will fault" (which would leak the answer).

Rows are (node, anchor day); features use events strictly before the anchor; the label says whether
a GPU-class fault starts on that node in (anchor, anchor + H]. Time split: training anchors need
anchor + max(H) <= split day; test anchors start at the split day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gpufleet.analytics.failure_metrics import calibration_table, summarise_binary
from gpufleet.exporter.errors import InputError

DAY = 86400.0
HORIZONS_DAYS = (1.0, 7.0, 30.0)
FEATURES = ("gpu_faults_total", "observed_days", "gpu_faults_7d", "gpu_faults_30d", "gpu_dbe_total",
            "any_faults_total", "any_faults_30d", "days_since_gpu_fault", "days_since_any_fault", "in_fault_now")


@dataclass(frozen=True)
class FaultEvent:
    node: str
    day: float
    start: bool
    fault_class: str
    desc: str


def load(path: Path) -> list[FaultEvent]:
    """Read ``infinitehbd_fault_trace.json`` (file or folder). Errors name the file and record."""
    path = Path(path)
    p = path / "infinitehbd_fault_trace.json" if path.is_dir() else path
    if not p.exists():
        raise InputError("file not found", path=str(p))
    try:
        raw = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg}", path=str(p), line=exc.lineno, column=exc.colno) from None
    if not isinstance(raw, list):
        raise InputError("expected a JSON list of events", path=str(p), line=1)
    out = []
    for i, e in enumerate(raw):
        try:
            kind = e["event_type"]
            if kind not in ("fault_start", "fault_end"):
                raise ValueError(f"event_type {kind!r}")
            out.append(FaultEvent(str(e["node_id"]), float(e["event_time"]), kind == "fault_start",
                                  str(e["fault_type"]["Class"]), str(e["fault_type"].get("Desc", ""))))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"event #{i}: bad or missing field ({exc})", path=str(p), column=f"record {i}") from None
    return sorted(out, key=lambda e: (e.day, e.node))


def features_at(events: list[FaultEvent], nodes: list[str], day: float) -> np.ndarray:
    """(len(nodes), len(FEATURES)) from events strictly before ``day``."""
    idx = {n: i for i, n in enumerate(nodes)}
    Z = np.zeros((len(nodes), len(FEATURES)))
    last_gpu = np.full(len(nodes), -np.inf)
    last_any = np.full(len(nodes), -np.inf)
    open_faults = np.zeros(len(nodes))
    for e in events:
        if e.day >= day:
            break
        i = idx[e.node]
        if not e.start:
            open_faults[i] = max(open_faults[i] - 1, 0)
            continue
        open_faults[i] += 1
        age = day - e.day
        Z[i, 5] += 1
        Z[i, 6] += age <= 30
        last_any[i] = e.day
        if e.fault_class == "GPU":
            Z[i, 0] += 1
            Z[i, 2] += age <= 7
            Z[i, 3] += age <= 30
            Z[i, 4] += "DBE" in e.desc
            last_gpu[i] = e.day
    Z[:, 1] = day
    Z[:, 7] = np.where(np.isfinite(last_gpu), day - last_gpu, day)
    Z[:, 8] = np.where(np.isfinite(last_any), day - last_any, day)
    Z[:, 9] = open_faults > 0
    return Z


def labels_at(events: list[FaultEvent], nodes: list[str], day: float, horizons_days: tuple[float, ...]) -> np.ndarray:
    idx = {n: i for i, n in enumerate(nodes)}
    y = np.zeros((len(nodes), len(horizons_days)), dtype=np.int64)
    for e in events:
        if e.start and e.fault_class == "GPU" and day < e.day:
            for k, h in enumerate(horizons_days):
                if e.day <= day + h:
                    y[idx[e.node], k] = 1
    return y


def backtest(events: list[FaultEvent], *, split_fraction: float = 2 / 3, fleet_nodes: int = 400,
             horizons_days: tuple[float, ...] = HORIZONS_DAYS, models: dict[str, Any] | None = None,
             gpus_per_node: int = 8) -> dict[str, Any]:
    """Daily anchors; fit before the split, evaluate after it; rate-only baseline beside the model."""
    from gpufleet.models.event_history import EventHistoryModel, RateOnlyEvents

    models = models if models is not None else {"events_rate": RateOnlyEvents(), "events_logistic": EventHistoryModel()}
    seen = sorted({e.node for e in events})
    nodes = seen + [f"silent-{i}" for i in range(max(fleet_nodes - len(seen), 0))]
    end = max(e.day for e in events)
    split = float(np.floor(end * split_fraction))
    hmax = max(horizons_days)
    train_days = np.arange(1.0, split - hmax + 1e-9, 1.0)
    test_days = np.arange(split, np.floor(end), 1.0)

    def rows(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Z = np.concatenate([features_at(events, nodes, d) for d in days])
        y = np.concatenate([labels_at(events, nodes, d, horizons_days) for d in days])
        at = np.repeat(days, len(nodes))
        return Z, y, at

    Ztr, ytr, _ = rows(train_days)
    Zte, yte, at_te = rows(test_days)
    hs = tuple(h * DAY for h in horizons_days)
    results: dict[str, Any] = {}
    for name, m in models.items():
        m.fit(Ztr, ytr, feature_names=FEATURES, horizons=hs)
        proba = m.predict_proba(Zte)
        per_h = {}
        for k, h in enumerate(horizons_days):
            valid = at_te + h <= end
            label = f"{int(h * 24)}h" if h < 7 else f"{int(h)}d"
            y, p = yte[valid, k], proba.proba[valid, k]
            block = summarise_binary(y, p, gpu_days=float(valid.sum()) * gpus_per_node)
            block["calibration"] = calibration_table(y, p, 5)
            block["_scores"] = (y, p)
            per_h[label] = block
        results[name] = per_h
    meta = {"nodes_in_trace": len(seen), "fleet_nodes": len(nodes), "trace_days": end, "split_day": split,
            "train_anchors": len(train_days), "test_anchors": len(test_days),
            "train_positive_rows": [int(v) for v in ytr.sum(axis=0)],
            "exposure_note": f"false alarms per 1,000 GPU-days count node-days x {gpus_per_node} GPUs"}
    return {"meta": meta, "models": results}
