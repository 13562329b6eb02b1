"""Strict-lead backtests: every origin forecasts exactly ``lead`` steps ahead, with conformal intervals.

Protocol (``evaluate_strict``), on a wide frame (time x series, NaN = no row):

- the last ``n_test`` steps are the **test** targets, the ``n_val`` before them **validation** targets, and the
  ``n_warm`` before those a warm-up that only feeds the interval calibration.  Every step of those windows is a
  target; its origin (the first unknown step) is ``lead - 1`` steps earlier, so each forecast is made with the
  data up to ``lead`` steps before the value it forecasts and nothing later.
- models are fitted twice: once on the data before the first warm-up origin (they then forecast the warm-up
  and validation targets) and once on the data before the first test origin (they forecast the test targets).
  Between refits a model is *moved*, not retrained: a model with ``rolling_point`` (``naive_last``, the
  seasonal naives, ``gbm``) forecasts every origin from the actuals up to it; any other model is refitted at
  every origin (correct but slow: meant for short windows).  A model with ``fit_panel`` (``gbm``) is trained on
  every series of the frame together (global).
- intervals: split-conformal per lead on the recent out-of-sample residuals (actual - point forecast) of the
  same model and series, those of the last ``n_cal`` origins whose targets are already known at the origin,
  each divided by its origin's scale (the mean absolute lead-step change over the day before; normalised
  conformal prediction) and multiplied by the current one; the level of each interval then adapts online
  (adaptive conformal inference, Gibbs and Candès 2021): after every known miss the nominal miss rate taken
  from the residuals moves by ``gamma x (alpha - miss)`` (it shrinks after a miss, grows after a hit).
- the default model is the lowest mean over series of validation MAE / ``naive_last`` MAE; ``naive_last`` is
  always a candidate (it scores exactly 1), so the default is never worse than it on the validation window.

Metrics per series and window (NaN actuals skipped): ``mae``, ``naive_mae`` (``naive_last`` on the same steps),
``ratio`` (mae / naive_mae), ``mase`` (mae / in-sample MAE of the daily seasonal naive on the training data),
``relmae`` (mae / MAE of ``seasonal_naive_daily`` at the same lead on the same steps), ``pinball``,
``coverage80`` ([q0.1, q0.9]) and ``coverage95`` ([q0.025, q0.975]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from gpufleet.models.forecast_base import Forecaster

NAIVE = "naive_last"
SEASONAL = "seasonal_naive_daily"
STRICT_MODELS: tuple[str, ...] = (NAIVE, SEASONAL, "gbm", "adaptive")
INTERVALS: tuple[float, ...] = (0.5, 0.8, 0.95)


@dataclass
class StrictSeries:
    """One model's strict-lead forecasts for one series: one value per target step."""

    model: str
    series: str
    targets: np.ndarray                # index positions of the targets in the frame
    role: np.ndarray                   # "warm" | "val" | "test" per target
    actual: np.ndarray
    point: np.ndarray
    quantiles: dict[float, np.ndarray]
    scale: float                       # in-sample MAE of the daily seasonal naive before the window


def windows(n: int, lead: int, n_test: int, n_val: int, n_warm: int) -> dict[str, np.ndarray]:
    """Target positions of each window (``warm``, ``val``, ``test``)."""
    if n_test < 1 or lead < 1:
        raise ValueError("need at least one test step and a lead >= 1")
    t0 = n - n_test
    v0 = t0 - n_val
    w0 = v0 - n_warm
    if w0 - lead + 1 < 3:
        raise ValueError(f"the series ({n} steps) is too short for {n_warm} + {n_val} + {n_test} target steps at "
                         f"lead {lead}")
    return {"warm": np.arange(w0, v0), "val": np.arange(v0, t0), "test": np.arange(t0, n)}


def _season_scale(y: np.ndarray, s: int) -> float:
    if len(y) <= s:
        return float("nan")
    d = np.abs(y[s:] - y[:-s])
    d = d[np.isfinite(d)]
    return float(d.mean()) if len(d) and d.mean() > 0 else float("nan")


def _fit_and_roll(cls: type[Forecaster], frame: pd.DataFrame, cut: int, targets: np.ndarray, lead: int,
                  freq: str, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Fit on rows before ``cut`` (the first origin), forecast each target from its own origin."""
    ends = targets - lead + 1
    out: dict[str, np.ndarray] = {}
    cols = [str(c) for c in frame.columns]
    idx = pd.DatetimeIndex(frame.index)
    if hasattr(cls, "fit_panel"):
        m: Any = cls(**params)
        m.fit_panel([frame[c].to_numpy(dtype=float)[:cut] for c in frame.columns], freq=freq,
                    timestamps=[idx[:cut]] * frame.shape[1])
        for c, name in zip(frame.columns, cols, strict=True):
            out[name] = m.rolling_point(frame[c].to_numpy(dtype=float), ends, lead, idx)
        return out
    for c, name in zip(frame.columns, cols, strict=True):
        y = frame[c].to_numpy(dtype=float)
        if hasattr(cls, "rolling_point"):
            try:
                m = cls(**params).fit(y[:cut], freq=freq, timestamps=idx[:cut])
            except ValueError:  # nothing to fit on (e.g. a pod that appears later): no forecast
                out[name] = np.full(len(ends), np.nan)
                continue
            out[name] = m.rolling_point(y, ends, lead)
        else:
            pts = np.full(len(ends), np.nan)
            for i, e in enumerate(ends):
                try:
                    pts[i] = cls(**params).fit(y[:e], freq=freq, timestamps=idx[:e]).predict(lead).point[-1]
                except ValueError:
                    continue
            out[name] = pts
    return out


def conformal(actual: np.ndarray, point: np.ndarray, scale: np.ndarray, lead: int, n_cal: int,
              gamma: float = 0.005, intervals: tuple[float, ...] = INTERVALS) -> dict[float, np.ndarray]:
    """Quantiles for a stream of consecutive strict-lead forecasts (module doc).  ``scale``: each origin's
    volatility (finite, > 0).  Residual i is known from origin i + lead on; origins without 20 known
    residuals get NaN quantiles."""
    n = len(actual)
    resid = (actual - point) / scale
    out: dict[float, np.ndarray] = {0.5: point.copy()}
    for cov in intervals:
        alpha = 1 - cov
        a_t = alpha
        lo_q, hi_q = np.full(n, np.nan), np.full(n, np.nan)
        for i in range(n):
            j = i - lead  # the latest origin whose target is known at origin i
            if j >= 0 and np.isfinite(actual[j]) and np.isfinite(lo_q[j]):
                miss = not (lo_q[j] <= actual[j] <= hi_q[j])
                a_t = a_t + gamma * (alpha - float(miss))
                a_t = float(np.clip(a_t, 0.001, 0.999))
            lo = max(0, j - n_cal + 1)
            e = resid[lo:j + 1] if j >= 0 else resid[:0]
            e = e[np.isfinite(e)]
            if len(e) < 20 or not np.isfinite(point[i]):
                continue
            ql, qh = np.quantile(e, [a_t / 2, 1 - a_t / 2])
            lo_q[i] = max(point[i] + ql * scale[i], 0.0)
            hi_q[i] = max(point[i] + qh * scale[i], 0.0)
        out[round(alpha / 2, 6)] = lo_q
        out[round(1 - alpha / 2, 6)] = hi_q
    lv = sorted(out)
    m = np.vstack([out[v] for v in lv])
    ok = np.isfinite(m).all(axis=0)
    m[:, ok] = np.sort(m[:, ok], axis=0)
    return {v: m[k] for k, v in enumerate(lv)}


def _origin_scale(y: np.ndarray, ends: np.ndarray, lead: int, window: int) -> np.ndarray:
    """Mean absolute ``lead``-step change over the ``window`` steps before each origin (+ a floor)."""
    d = np.abs(pd.Series(y).diff(lead)).to_numpy()
    roll = pd.Series(d).rolling(window, min_periods=max(2, window // 4)).mean().to_numpy()
    vals = roll[np.clip(ends - 1, 0, len(y) - 1)]
    finite = vals[np.isfinite(vals) & (vals > 0)]
    floor = float(np.median(finite)) * 0.05 if len(finite) else 1.0
    vals = np.where(np.isfinite(vals), vals, floor)
    return np.maximum(vals, max(floor, 1e-6))


def _metrics(actual: np.ndarray, point: np.ndarray, qd: dict[float, np.ndarray]) -> dict[str, float]:
    ok = np.isfinite(actual) & np.isfinite(point)
    if not ok.any():
        return {"mae": float("nan"), "pinball": float("nan"), "coverage80": float("nan"),
                "coverage95": float("nan"), "coverage50": float("nan"), "n": 0.0}
    ae = np.abs(actual - point)[ok]
    out = {"mae": float(ae.mean()), "n": float(ok.sum())}
    for cov, lo, hi in ((50, 0.25, 0.75), (80, 0.1, 0.9), (95, 0.025, 0.975)):
        a, b = qd.get(lo), qd.get(hi)
        if a is None or b is None:
            out[f"coverage{cov}"] = float("nan")
            continue
        k = ok & np.isfinite(a) & np.isfinite(b)
        out[f"coverage{cov}"] = float(np.mean((actual[k] >= a[k]) & (actual[k] <= b[k]))) if k.any() else float("nan")
    pin, cnt = 0.0, 0
    k = ok & np.all([np.isfinite(qd[q]) for q in qd], axis=0)
    for q, v in qd.items():
        d = actual[k] - v[k]
        pin += float(np.sum(np.maximum(q * d, (q - 1) * d)))
        cnt += 1
    out["pinball"] = 2 * pin / (cnt * max(float(np.sum(np.abs(actual[k]))), 1e-9)) if k.any() else float("nan")
    return out


def _nanmedian(v: list[float]) -> float:
    a = np.array(v, dtype=float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if len(a) else float("nan")


def _nanmean(v: list[float]) -> float:
    a = np.array(v, dtype=float)
    a = a[np.isfinite(a)]
    return float(np.mean(a)) if len(a) else float("nan")


def score_strict(results: list[StrictSeries], role: str) -> dict[str, Any]:
    """{"models": {m: medians over series + ``ratio_mean``}, "series": {s: {m: metrics}}} for one window."""
    per: dict[str, dict[str, dict[str, float]]] = {}
    for r in results:
        k = r.role == role
        qd = {q: v[k] for q, v in r.quantiles.items()}
        met = _metrics(r.actual[k], r.point[k], qd)
        met["mase"] = met["mae"] / r.scale if np.isfinite(r.scale) and r.scale > 0 else float("nan")
        per.setdefault(r.series, {})[r.model] = met
    for mm in per.values():
        naive = mm.get(NAIVE, {}).get("mae", float("nan"))
        sn = mm.get(SEASONAL, {}).get("mae", float("nan"))
        for v in mm.values():
            v["naive_mae"] = naive
            v["ratio"] = v["mae"] / naive if np.isfinite(naive) and naive > 0 else float("nan")
            v["relmae"] = v["mae"] / sn if np.isfinite(sn) and sn > 0 else float("nan")
    models = sorted({m for mm in per.values() for m in mm})
    agg: dict[str, dict[str, float]] = {}
    keys = ("mae", "naive_mae", "ratio", "mase", "relmae", "pinball", "coverage50", "coverage80", "coverage95")
    for m in models:
        rows = [per[s][m] for s in per if m in per[s]]
        agg[m] = {k: _nanmedian([r[k] for r in rows]) for k in keys}
        agg[m]["ratio_mean"] = _nanmean([r["ratio"] for r in rows])
    return {"models": agg, "series": per}


def choose_strict(val: dict[str, Any]) -> str:
    """Lowest mean validation MAE ratio to ``naive_last`` over series (ties: lower pinball)."""
    models = val["models"]
    names = [m for m in models if np.isfinite(models[m]["ratio_mean"])]
    if not names:
        raise ValueError("no model has a validation score")
    return min(names, key=lambda m: (models[m]["ratio_mean"], models[m]["pinball"]))


def evaluate_strict(frame: pd.DataFrame, freq: str, lead: int, season: int,
                    models: tuple[str, ...] = STRICT_MODELS, n_test: int = 1008, n_val: int = 1008,
                    n_warm: int = 288, n_cal: int = 1008, gamma: float = 0.005,
                    params: dict[str, dict[str, Any]] | None = None,
                    progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], list[StrictSeries]]:
    """The strict-lead protocol (module doc).  Returns ``({"default", "models", "series", "validation",
    "validation_series", ...}, results)``; ``models`` / ``series`` hold the TEST figures."""
    from gpufleet.models.forecast_base import forecasters

    reg = forecasters()
    names = tuple(dict.fromkeys((NAIVE, *models)))
    unknown = [m for m in names if m not in reg]
    if unknown:
        raise ValueError(f"unknown forecaster(s): {', '.join(unknown)} (have {', '.join(sorted(reg))})")
    params = dict(params or {})
    for m in ("gbm", "adaptive"):
        if m in names:
            params.setdefault(m, {}).setdefault("horizon", lead)
            params[m].setdefault("leads", (lead,))  # strict: only the scored lead needs a model
            params[m].setdefault("season", season)
    if SEASONAL in names:
        params.setdefault(SEASONAL, {}).setdefault("season", season)
    n = len(frame)
    win = windows(n, lead, n_test, n_val, n_warm)
    first_pre = int(win["warm"][0]) - lead + 1  # the first warm-up origin
    first_test = int(win["test"][0]) - lead + 1
    pre_targets = np.concatenate([win["warm"], win["val"]])
    targets = np.concatenate([pre_targets, win["test"]])
    roles = np.array(["warm"] * len(win["warm"]) + ["val"] * len(win["val"]) + ["test"] * len(win["test"]))
    ends = targets - lead + 1
    results: list[StrictSeries] = []
    for mname in names:
        cls = reg[mname]
        p = params.get(mname, {})
        a = _fit_and_roll(cls, frame, first_pre, pre_targets, lead, freq, p)  # type: ignore[arg-type]
        b = _fit_and_roll(cls, frame, first_test, win["test"], lead, freq, p)  # type: ignore[arg-type]
        for c in frame.columns:
            name = str(c)
            y = frame[c].to_numpy(dtype=float)
            point = np.maximum(np.concatenate([a[name], b[name]]), 0.0)
            actual = y[targets]
            sc = _origin_scale(y, ends, lead, max(season, 2 * lead))
            qd = conformal(actual, point, sc, lead, n_cal, gamma)
            results.append(StrictSeries(mname, name, targets, roles, actual, point, qd,
                                        _season_scale(y[:first_test], season)))
        if progress:
            progress(mname)
    val = score_strict(results, "val")
    test = score_strict(results, "test")
    default = choose_strict(val)
    out = {"mode": "strict", "default": default, "models": test["models"], "series": test["series"],
           "validation": val["models"], "validation_series": val["series"], "freq": freq, "lead_steps": lead,
           "season_steps": season, "windows": {k: [str(frame.index[v[0]]), str(frame.index[v[-1]])]
                                                for k, v in win.items()},
           "scale": SEASONAL, "baseline": NAIVE}
    return out, results
