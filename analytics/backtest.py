"""Rolling-origin backtests of demand forecasters, with conformal calibration of their intervals.

Protocol: origins are spaced one horizon apart; at each origin a model is fitted on everything before it and
forecasts ``horizon`` steps.  Origins carry a role: ``"val"`` (choose the default model; calibrate intervals
cross-conformally, each origin from the other validation origins) and ``"test"`` (scored; calibrated from the
``n_cal`` origins immediately before it, so no test origin ever sees its own or later actuals).

``naive_last`` (the last value) is always a scored candidate.  For a strict-lead backtest (every origin
forecasts exactly one lead ahead) see :mod:`analytics.forecast_strict`.

Metrics (NaN actuals are skipped everywhere):
- ``mae``: mean absolute error (per series; the aggregate is the median over series).
- ``mase``: MAE / in-sample MAE of the daily seasonal naive over the origin's training data (Hyndman).
- ``relmae``: MAE / MAE of ``seasonal_naive_daily`` on the same origins and steps (ratio on the test itself).
- ``smape``: mean of 200 |e| / (|y| + |f|) in percent (0/0 steps skipped).
- ``pinball``: weighted quantile loss, 2 x sum of pinball losses over the levels / (levels x sum |y|).
- ``coverage80`` / ``coverage95``: share of actuals inside [q0.1, q0.9] / [q0.025, q0.975].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from gpufleet.models.forecast_base import DEFAULT_QUANTILES, Forecaster, sort_quantiles

LEVELS: tuple[float, ...] = tuple(sorted({0.025, 0.975, *DEFAULT_QUANTILES}))
BASELINE = "seasonal_naive_daily"


@dataclass
class OriginResult:
    """One model's forecast for one series at one origin, with the actuals."""

    model: str
    series: str
    origin: pd.Timestamp
    role: str
    actual: np.ndarray
    quantiles: dict[float, np.ndarray]
    scale: float
    raw_quantiles: dict[float, np.ndarray] = field(default_factory=dict)
    recent_scale: float = float("nan")  # mean |seasonal difference| over the last week before the origin

    @property
    def median(self) -> np.ndarray:
        return self.quantiles[0.5]


def plan_origins(index: pd.DatetimeIndex, horizon: int, n_test: int = 7, n_val: int = 7) -> dict[pd.Timestamp, str]:
    """Origins (time of the first forecast step) -> role: the last ``n_test`` horizons are test, the
    ``n_val`` before them validation."""
    n = len(index)
    out: dict[pd.Timestamp, str] = {}
    for k in range(n_test + n_val, 0, -1):
        i = n - k * horizon
        if i <= 0:
            continue
        out[pd.Timestamp(index[i])] = "test" if k <= n_test else "val"
    return out


def _season_scale(y: np.ndarray, s: int) -> float:
    if len(y) <= s:
        return float("nan")
    d = np.abs(y[s:] - y[:-s])
    d = d[np.isfinite(d)]
    return float(d.mean()) if len(d) and d.mean() > 0 else float("nan")


def _one_series(args: tuple[str, pd.Series, dict[str, Callable[[], Forecaster]], str, int, int,
                dict[pd.Timestamp, str]]) -> list[OriginResult]:
    name, y, factories, freq, horizon, season, origins = args
    out: list[OriginResult] = []
    idx = y.index
    fitted: dict[str, Forecaster] = {}
    for origin, role in origins.items():
        i = int(idx.get_indexer(pd.DatetimeIndex([origin]))[0])
        if i < 0:
            continue
        train = y.iloc[:i]
        actual = y.iloc[i:i + horizon].to_numpy(dtype=float)
        scale = _season_scale(train.to_numpy(dtype=float), season)
        recent = _season_scale(train.to_numpy(dtype=float)[-8 * season:], season)
        for mname, make in factories.items():
            m = fitted.get(mname)
            if m is not None and hasattr(m, "update"):  # fit once, move the origin (e.g. the LSTM)
                m.update(train.to_numpy(dtype=float), timestamps=train.index)
            else:
                try:
                    m = make().fit(train.to_numpy(dtype=float), freq=freq, timestamps=train.index)
                except ValueError:
                    continue
                if hasattr(m, "update"):
                    fitted[mname] = m
            fc = m.predict(horizon, LEVELS)
            qd = {q: fc.quantile(q) for q in LEVELS}
            out.append(OriginResult(mname, name, origin, role, actual, qd, scale, dict(qd), recent))
    return out


def run_backtest(frame: pd.DataFrame, factories: dict[str, Callable[[], Forecaster]], freq: str, horizon: int,
                 season: int, origins: dict[pd.Timestamp, str], n_jobs: int = 1,
                 progress: Callable[[str], None] | None = None) -> list[OriginResult]:
    """Fit and forecast every model at every origin for every column of ``frame``."""
    tasks = [(str(c), frame[c], factories, freq, horizon, season, origins) for c in frame.columns]
    results: list[OriginResult] = []
    if n_jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=n_jobs) as ex:
            for (name, *_), res in zip(tasks, ex.map(_one_series, tasks), strict=True):
                results.extend(res)
                if progress:
                    progress(name)
    else:
        for t in tasks:
            results.extend(_one_series(t))
            if progress:
                progress(t[0])
    return results


def calibrate(results: list[OriginResult], n_cal: int = 7, scaled: bool = False,
              widen: float = 1.0) -> list[OriginResult]:
    """Conformal calibration (in place): quantile q = median + the q-quantile of calibration residuals
    (actual - median) pooled over the calibration origins' steps.  See the module doc for which origins.

    ``scaled``: each calibration residual is divided by the recent volatility of its own origin (mean absolute
    daily change over the week before it, ``recent_scale``) and the quantiles are multiplied by the current
    origin's, so the bands widen when the series turns more volatile (normalised conformal prediction).
    ``widen``: the residual quantile taken for level q is 0.5 + widen x (q - 0.5) (clipped to [0, 1]): residuals
    within a day are correlated, so 7 origins hold few independent errors and the plain empirical quantiles
    under-cover (finite-sample correction)."""
    groups: dict[tuple[str, str], list[OriginResult]] = {}
    for r in results:
        groups.setdefault((r.model, r.series), []).append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: r.origin)
        use_scale = scaled and all(np.isfinite(r.recent_scale) and r.recent_scale > 0 for r in rs)
        resid = [(r.actual - r.raw_quantiles[0.5]) / (r.recent_scale if use_scale else 1.0) for r in rs]
        for i, r in enumerate(rs):
            if r.role == "val":
                cal = [resid[j] for j, o in enumerate(rs) if o.role == "val" and j != i]
            else:
                cal = resid[max(0, i - n_cal):i]
            e = np.concatenate(cal) if cal else np.zeros(0)
            e = e[np.isfinite(e)]
            if len(e) < 10:
                continue
            med = r.raw_quantiles[0.5]
            k = r.recent_scale if use_scale else 1.0
            c = float(np.quantile(e, 0.5))
            qd = {q: np.maximum(med + k * (float(np.quantile(e, min(max(0.5 + widen * (q - 0.5), 0.0), 1.0))) - c),
                                0.0) for q in LEVELS}
            qd[0.5] = med
            r.quantiles = sort_quantiles(qd)
    return results


def _metrics(rs: list[OriginResult]) -> dict[str, float]:
    y = np.concatenate([r.actual for r in rs])
    ok = np.isfinite(y)
    f = np.concatenate([r.median for r in rs])
    ae = np.abs(y - f)
    mase = np.nanmean([np.nanmean(np.abs(r.actual - r.median)) / r.scale for r in rs
                       if np.isfinite(r.scale) and np.isfinite(r.actual).any()]) if rs else np.nan
    denom = np.abs(y) + np.abs(f)
    sm = ok & (denom > 0)
    pin = 0.0
    for q in LEVELS:
        fq = np.concatenate([r.quantiles[q] for r in rs])
        d = y - fq
        pin += float(np.sum(np.maximum(q * d, (q - 1) * d)[ok]))
    wql = 2 * pin / (len(LEVELS) * max(float(np.sum(np.abs(y[ok]))), 1e-9))

    def cov(lo: float, hi: float) -> float:
        a = np.concatenate([r.quantiles[lo] for r in rs])
        b = np.concatenate([r.quantiles[hi] for r in rs])
        return float(np.mean(((y >= a) & (y <= b))[ok])) if ok.any() else float("nan")

    return {"mase": float(mase), "mae": float(np.mean(ae[ok])) if ok.any() else float("nan"),
            "smape": float(np.mean(200 * ae[sm] / denom[sm])) if sm.any() else float("nan"),
            "pinball": wql, "coverage80": cov(0.1, 0.9), "coverage95": cov(0.025, 0.975)}


def score(results: list[OriginResult], role: str = "test") -> dict[str, Any]:
    """{"models": {m: aggregate}, "series": {s: {m: metrics}}}; aggregates are medians over series (and
    ``mase_mean``); ``relmae`` = MAE / seasonal-naive MAE per series."""
    per: dict[str, dict[str, dict[str, float]]] = {}
    groups: dict[tuple[str, str], list[OriginResult]] = {}
    for r in results:
        if r.role == role:
            groups.setdefault((r.series, r.model), []).append(r)
    for (s, m), rs in groups.items():
        per.setdefault(s, {})[m] = _metrics(rs)
    for mm in per.values():
        base = mm.get(BASELINE, {}).get("mae", float("nan"))
        for v in mm.values():
            v["relmae"] = v["mae"] / base if base and np.isfinite(base) and base > 0 else float("nan")
    models = sorted({m for mm in per.values() for m in mm})
    agg: dict[str, dict[str, float]] = {}
    for m in models:
        rows = [per[s][m] for s in per if m in per[s]]
        a = {k: _nanmedian([r[k] for r in rows]) for k in ("mae", "mase", "relmae", "smape", "pinball",
                                                             "coverage80", "coverage95")}
        a["mase_mean"] = float(np.nanmean([r["mase"] for r in rows])) if rows else float("nan")
        agg[m] = a
    return {"models": agg, "series": per}


def _nanmedian(v: Iterable[float]) -> float:
    arr = np.array(list(v), dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(np.median(arr)) if len(arr) else float("nan")


def choose_default(val_scores: dict[str, Any], candidates: list[str] | None = None) -> str:
    """The model with the lowest median validation MASE (ties: lower pinball)."""
    models = val_scores["models"]
    names = [m for m in (candidates or list(models)) if m in models and np.isfinite(models[m]["mase"])]
    if not names:
        raise ValueError("no model has a validation score")
    return min(names, key=lambda m: (models[m]["mase"], models[m]["pinball"]))


#: always scored (added when not asked for), so the validation default is never worse than it there
NAIVE = "naive_last"
DEFAULT_MODELS = (NAIVE, "seasonal_naive_daily", "seasonal_naive_weekly", "seasonal_mean", "ets", "theta", "ensemble",
                  "combo")
#: conformal widening factor, chosen on the Helios hourly VALIDATION origins (coverage80 closest to 0.80)
WIDEN = 1.1


def evaluate(frame: pd.DataFrame, freq: str, horizon: int, season: int, models: tuple[str, ...] = DEFAULT_MODELS,
             n_test: int = 7, n_val: int = 7, n_cal: int = 7, n_jobs: int = 1, widen: float = WIDEN,
             progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], list[OriginResult]]:
    """The whole protocol: backtest, calibrate, choose the default on validation, score the test origins.

    Returns ``({"default", "models", "series", "validation", "origins", ...}, results)``; ``models`` and
    ``series`` hold the TEST figures."""
    from gpufleet.models.forecast_base import forecasters

    reg = forecasters()
    models = tuple(dict.fromkeys((NAIVE, *models)))
    unknown = [m for m in models if m not in reg]
    if unknown:
        raise ValueError(f"unknown forecaster(s): {', '.join(unknown)} (have {', '.join(sorted(reg))})")
    factories = {m: reg[m] for m in models}
    origins = plan_origins(pd.DatetimeIndex(frame.index), horizon, n_test, n_val)
    if not any(r == "test" for r in origins.values()):
        raise ValueError("the series is too short for one test origin")
    results = run_backtest(frame, factories, freq, horizon, season, origins, n_jobs, progress)  # type: ignore[arg-type]
    calibrate(results, n_cal, widen=widen)
    val = score(results, "val")
    test = score(results, "test")
    default = choose_default(val) if val["models"] else choose_default(test)
    out = {"default": default, "models": test["models"], "series": test["series"],
           "validation": val["models"], "freq": freq, "horizon_steps": horizon, "season_steps": season,
           "origins": {str(k): v for k, v in origins.items()}, "scale": BASELINE}
    return out, results
