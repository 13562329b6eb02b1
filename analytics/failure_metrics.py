"""Metrics for failure predictors: ranking, operating points, calibration, lead time, concordance.

Everything here takes plain arrays so that twin windows, Titan GPUs and InfiniteHBD nodes are scored
by the same code.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _clean(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and scores {p.shape} differ")
    return y, p


def pr_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Average precision (area under the precision-recall curve); None without positives."""
    from sklearn.metrics import average_precision_score

    y, p = _clean(y, p)
    return float(average_precision_score(y, p)) if y.sum() > 0 else None


def roc_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    y, p = _clean(y, p)
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def recall_at_precision(y: np.ndarray, p: np.ndarray, min_precision: float = 0.5) -> float | None:
    """The highest recall reached at a threshold whose precision is at least ``min_precision``."""
    from sklearn.metrics import precision_recall_curve

    y, p = _clean(y, p)
    if y.sum() == 0:
        return None
    prec, rec, _ = precision_recall_curve(y, p)
    ok = prec >= min_precision
    return float(rec[ok].max()) if ok.any() else 0.0


def recall_at_false_alarm_rate(y: np.ndarray, p: np.ndarray, gpu_days: float,
                               max_per_1000_gpu_days: float = 1.0) -> tuple[float | None, float | None]:
    """Recall at the lowest threshold that keeps false alarms <= ``max_per_1000_gpu_days``.

    ``gpu_days`` is the exposure the scored rows stand for (e.g. windows x stride in days). Returns
    (recall, threshold); a false alarm is a scored row above the threshold whose label is 0.
    """
    y, p = _clean(y, p)
    if y.sum() == 0 or gpu_days <= 0:
        return None, None
    allowed = int(np.floor(max_per_1000_gpu_days * gpu_days / 1000.0))
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    fp = np.cumsum(1 - ys)
    tp = np.cumsum(ys)
    # candidate cut points: after the last row of each distinct score
    last_of_score = np.r_[ps[1:] != ps[:-1], True]
    ok = last_of_score & (fp <= allowed)
    if not ok.any():
        return 0.0, float(ps[0]) + 1e-12
    k = int(np.flatnonzero(ok)[-1])
    return float(tp[k] / y.sum()), float(ps[k])


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability table over quantile bins of the predicted probability."""
    y, p = _clean(y, p)
    if len(y) == 0:
        return []
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    out = []
    for b in np.unique(idx):
        sel = idx == b
        out.append({"n": int(sel.sum()), "predicted": float(p[sel].mean()), "observed": float(y[sel].mean())})
    return out


def brier(y: np.ndarray, p: np.ndarray) -> float:
    y, p = _clean(y, p)
    return float(np.mean((p - y) ** 2)) if len(y) else float("nan")


def concordance_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float | None:
    """Harrell's C: among comparable pairs (i failed before j's time), the share where risk_i > risk_j.

    Ties in risk count one half. O(n log n) per event block via sorting; fine for 10^5 rows.
    """
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event).astype(bool)
    r = np.asarray(risk, dtype=np.float64)
    if e.sum() == 0:
        return None
    order = np.argsort(r)
    r_sorted = r[order]
    t_by_risk = t[order]
    conc = 0.0
    pairs = 0.0
    # for each failed i: compare with all j with t_j > t_i
    ev = np.flatnonzero(e)
    for chunk in np.array_split(ev, max(len(ev) // 512, 1)):
        later = t_by_risk[None, :] > t[chunk, None]  # (c, n) in risk order
        lower = r_sorted[None, :] < r[chunk, None]
        equal = r_sorted[None, :] == r[chunk, None]
        conc += float((later & lower).sum() + 0.5 * (later & equal).sum())
        pairs += float(later.sum())
    return conc / pairs if pairs else None


def lead_times(alarm_ts: np.ndarray, fail_ts: np.ndarray) -> np.ndarray:
    """Seconds from the first alarm to the failure it preceded (one value per caught failure)."""
    a = np.asarray(alarm_ts, dtype=np.float64)
    f = np.asarray(fail_ts, dtype=np.float64)
    return f - a


def summarise_binary(y: np.ndarray, p: np.ndarray, gpu_days: float | None = None) -> dict[str, Any]:
    """The standard block of figures for one model and one horizon."""
    y, p = _clean(y, p)
    out: dict[str, Any] = {
        "n": len(y), "positives": int(y.sum()), "prevalence": float(y.mean()) if len(y) else None,
        "pr_auc": pr_auc(y, p), "roc_auc": roc_auc(y, p),
        "recall_at_precision_0.5": recall_at_precision(y, p, 0.5), "brier": brier(y, p),
    }
    if gpu_days is not None:
        rec, thr = recall_at_false_alarm_rate(y, p, gpu_days, 1.0)
        out["recall_at_1_false_alarm_per_1000_gpu_days"] = rec
        out["threshold_1_false_alarm_per_1000_gpu_days"] = thr
    return out
