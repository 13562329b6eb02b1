"""ORNL Titan GPU lifetimes (``../shared/data/titan-gpu-lifetimes``): loader and time-split survival backtest.

A GPU "fails" at its first DBE (double-bit ECC) or OTB (off the bus) event. Its age is the time since
its first insertion. Covariates are what an operator knows at the reference time: the batch (first
inserted before / after 2016-01-01) and the cabinet position of its current placement (column, row,
cage, slot, node).

Backtest (no look-ahead): fit on the history before ``split`` (GPUs censored at ``split``), then
(1) rank the GPUs in service at ``split`` by predicted one-year risk and compare with their observed
failures (Harrell's concordance index), and (2) every 30 days after ``split`` predict each in-service
GPU's 30-day failure probability and compare with what happened (calibration, PR-AUC, ROC-AUC).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from gpufleet.analytics.failure_metrics import brier, calibration_table, concordance_index, pr_auc, roc_auc
from gpufleet.exporter.errors import InputError

DAY = 86400.0
NEW_BATCH_FROM = datetime(2016, 1, 1).timestamp()
LOCATION = re.compile(r"^c(\d+)-(\d+)c(\d+)s(\d+)n(\d+)$")
COVARIATES = ("batch_new", "col", "row", "cage_1", "cage_2", "slot", "node_1", "node_2", "node_3")
"""Cage (0-2) and node (0-3) are categories (one-hot, the first level is the reference); column, row
and slot are positions kept as numbers (the SC '20 paper finds position effects by cage and node)."""
REQUIRED = ("SN", "location", "insert", "remove", "event")


@dataclass(frozen=True)
class Placement:
    serial: str
    location: tuple[int, int, int, int, int]
    insert: float | None
    remove: float
    failure: str  # "" | "DBE" | "OTB"


@dataclass
class TitanData:
    """Per-GPU life records: first insertion, first failure (or inf), last seen, placements."""

    serials: list[str]
    first_insert: np.ndarray
    fail_at: np.ndarray
    last_seen: np.ndarray
    placements: dict[str, list[Placement]]

    def covariates(self, at: float) -> np.ndarray:
        """(n, 9) covariates as known at time ``at``: batch and the placement current at ``at``."""
        out = np.zeros((len(self.serials), len(COVARIATES)))
        for i, sn in enumerate(self.serials):
            ps = self.placements[sn]
            cur = ps[0]
            for p in ps:
                start = p.insert if p.insert is not None else p.remove
                if start <= at:
                    cur = p
            out[i, 0] = float(self.first_insert[i] >= NEW_BATCH_FROM)
            col, row, cage, slot, node = cur.location
            out[i, 1:] = (col, row, cage == 1, cage == 2, slot, node == 1, node == 2, node == 3)
        return out


def _ts(text: str, path: Path, line: int, column: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").timestamp()
    except ValueError:
        raise InputError(f"bad timestamp {text!r}", path=str(path), line=line, column=column) from None


def load(path: Path, exclude_service: bool = True) -> TitanData:
    """Read ``gc_full.csv`` (file or its folder). Errors name the file and line."""
    path = Path(path)
    csv_path = path / "gc_full.csv" if path.is_dir() else path
    service: set[str] = set()
    svc_path = csv_path.parent / "titan.service.txt"
    if exclude_service and svc_path.exists():
        for raw in svc_path.read_text().splitlines():
            parts = raw.split()
            if len(parts) >= 3:
                service.add(parts[2])
    if not csv_path.exists():
        raise InputError("file not found", path=str(csv_path))
    placements: dict[str, list[Placement]] = {}
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"missing columns {missing}", path=str(csv_path), line=1)
        for line, row in enumerate(reader, start=2):
            m = LOCATION.match(row["location"] or "")
            if not m:
                raise InputError(f"bad location {row['location']!r}", path=str(csv_path), line=line, column="location")
            if row["location"] in service:
                continue
            event = (row["event"] or "").strip()
            if event not in ("", "DBE", "OTB"):
                raise InputError(f"unknown event {event!r}", path=str(csv_path), line=line, column="event")
            if not row["remove"]:
                raise InputError("empty remove time", path=str(csv_path), line=line, column="remove")
            ins = _ts(row["insert"], csv_path, line, "insert") if row["insert"] else None
            rem = _ts(row["remove"], csv_path, line, "remove")
            loc = tuple(int(g) for g in m.groups())
            placements.setdefault(row["SN"], []).append(
                Placement(row["SN"], loc, ins, rem, event))  # type: ignore[arg-type]
    if not placements:
        raise InputError("no GPU rows", path=str(csv_path))
    serials = sorted(placements)
    first, fail, last = [], [], []
    for sn in serials:
        ps = sorted(placements[sn], key=lambda p: p.insert if p.insert is not None else p.remove)
        placements[sn] = ps
        starts = [p.insert for p in ps if p.insert is not None]
        first.append(min(starts) if starts else min(p.remove for p in ps))
        fails = [p.remove for p in ps if p.failure]
        fail.append(min(fails) if fails else np.inf)
        last.append(max(p.remove for p in ps))
    return TitanData(serials, np.array(first), np.array(fail), np.array(last), placements)


def backtest(data: TitanData, split: datetime, models: dict[str, Any] | None = None, horizon_days: float = 30.0,
             rank_horizon_days: float = 365.0) -> dict[str, Any]:
    """Fit survival models before ``split``; score concordance and 30-day calibration after it."""
    from gpufleet.models.survival import AgeOnlySurvival, CoxSurvival

    models = models if models is not None else {"survival_age": AgeOnlySurvival(), "cox": CoxSurvival()}
    t_split = split.timestamp()
    train = data.first_insert < t_split
    end_train = np.minimum(np.minimum(data.fail_at, data.last_seen), t_split)
    dur = (end_train - data.first_insert)[train]
    ev = (data.fail_at <= t_split)[train] & (data.fail_at <= data.last_seen + 1)[train]
    keep = dur > 0
    X_train = data.covariates(t_split)[train][keep]
    for m in models.values():
        m.fit(X_train, dur[keep], ev[keep], feature_names=COVARIATES)

    # (1) concordance over the GPUs in service at the split
    alive = train & (data.fail_at > t_split) & (data.last_seen > t_split)
    X_now = data.covariates(t_split)[alive]
    age_now = t_split - data.first_insert[alive]
    t_end = np.minimum(data.fail_at[alive], data.last_seen[alive]) - t_split
    failed_later = np.isfinite(data.fail_at[alive])
    t_data_end = float(data.last_seen.max())
    results: dict[str, Any] = {}
    for name, m in models.items():
        risk = m.predict_proba(X_now, age_now, rank_horizon_days * DAY).proba
        results[name] = {"c_index": concordance_index(t_end, failed_later, risk)}

    # (2) 30-day probabilities every 30 days after the split
    anchors = np.arange(t_split, t_data_end - horizon_days * DAY, horizon_days * DAY)
    ys: list[np.ndarray] = []
    ps: dict[str, list[np.ndarray]] = {n: [] for n in models}
    covs_cache = {}
    for a in anchors:
        in_service = (data.first_insert < t_split) & (data.fail_at > a) & (data.last_seen > a)
        horizon_end = a + horizon_days * DAY
        failed = data.fail_at <= horizon_end
        # GPUs that left service in the horizon without failing are censored: leave them out
        known = in_service & (failed | (data.last_seen >= horizon_end))
        covs_cache[a] = data.covariates(a)
        ys.append(failed[known].astype(int))
        for name, m in models.items():
            ps[name].append(m.predict_proba(covs_cache[a][known], a - data.first_insert[known], horizon_days * DAY).proba)
    y = np.concatenate(ys) if ys else np.zeros(0, int)
    label = f"{int(horizon_days)}d"
    for name in models:
        p = np.concatenate(ps[name]) if ps[name] else np.zeros(0)
        results[name].update({
            "n": len(y), "positives": int(y.sum()),
            "pr_auc": pr_auc(y, p), "roc_auc": roc_auc(y, p), "brier": brier(y, p),
            "expected_failures": float(p.sum()), "observed_failures": int(y.sum()),
            "calibration": calibration_table(y, p, 10),
        })
        results[name]["_scores"] = (y, p)
        results[name] = {label: results[name]}
    meta = {"split": split.isoformat(), "train_gpus": int(keep.sum()), "train_failures": int(ev[keep].sum()),
            "test_gpus_at_split": int(alive.sum()), "test_failures_after_split": int(failed_later.sum()),
            "anchors": len(anchors), "horizon": label, "rank_horizon_days": rank_horizon_days}
    return {"meta": meta, "models": results}
