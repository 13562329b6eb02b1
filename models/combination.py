"""Self-weighting, self-calibrating combination of simple forecasters (``combo``).

At every fit the model runs its own small rolling-origin backtest on the *training* series only: the last
``n_origins`` seasons (days) are internal origins, each member is fitted on the data before the origin and
forecasts one season.  From those internal forecasts it takes

- **weights**: inverse mean absolute error of each member (missing steps skipped), so a member that tracks the
  series' recent level well counts more; equal weights when the history is too short;
- **intervals**: the empirical distribution of the combination's own internal errors, each divided by the
  level-free scale of its origin (mean absolute daily change over the preceding week) and multiplied by the
  current scale, so the bands follow the series' recent volatility.  They are model-own intervals; backtests
  still calibrate them conformally (``analytics.backtest.calibrate``).

The members are simple, fast and different (seasonal naive daily and weekly, slot mean with a level shift,
ETS), the combination of such models being the most reliable way to beat each of them on unseen series
(M4/M5).  Theta is left out by default: its statsmodels fit takes about half a second and the internal backtest
refits every member ``n_origins + 1`` times.  The procedure is the same for every series: nothing is tuned per
series.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gpufleet.models.forecast_base import (
    DEFAULT_QUANTILES,
    FloatArray,
    Forecast,
    Forecaster,
    fill_missing,
    forecasters,
    quantiles_from_errors,
    steps_per,
)

MEMBERS: tuple[str, ...] = ("seasonal_naive_daily", "seasonal_naive_weekly", "seasonal_mean", "ets")


def _scale(y: FloatArray, s: int, window: int) -> float:
    """Mean absolute seasonal difference over the last ``window`` steps of ``y`` (NaN-safe)."""
    tail = y[-(window + s):]
    if len(tail) <= s:
        return float("nan")
    d = np.abs(tail[s:] - tail[:-s])
    d = d[np.isfinite(d)]
    return float(d.mean()) if len(d) and d.mean() > 0 else float("nan")


class Combination(Forecaster):
    """Inverse-validation-MAE weighted combination with volatility-scaled empirical intervals (module doc)."""

    name = "combo"

    def __init__(self, members: tuple[str, ...] = MEMBERS, n_origins: int = 7, power: float = 1.0,
                 season: str | int = "1d", seed: int = 0) -> None:
        self.members = tuple(members)
        self.n_origins = n_origins
        self.power = power
        self.season = season
        self.seed = seed

    def _member(self, name: str) -> Forecaster:
        cls = forecasters().get(name)
        if cls is None:
            raise ValueError(f"unknown member forecaster {name!r}")
        inst = cls(seed=self.seed)  # type: ignore[call-arg]
        assert isinstance(inst, Forecaster)
        return inst

    def fit(self, y: Any, freq: str = "1h", timestamps: Any = None, as_of: Any = None) -> Combination:
        arr = np.asarray(y, dtype=float).ravel()
        if timestamps is not None and as_of is not None:
            import pandas as pd

            ts = pd.DatetimeIndex(timestamps)
            keep = np.asarray(ts <= pd.Timestamp(as_of))
            arr, timestamps = arr[keep], ts[keep]
        if len(arr) < 3:
            raise ValueError(f"{self.name}: need at least 3 observations, got {len(arr)}")
        self.freq_ = freq
        s = max(1, steps_per(self.season, freq))
        self.season_ = s
        self.raw_ = arr
        self.y_ = fill_missing(arr, s)
        self.start_ = None
        if timestamps is not None and len(timestamps):
            import pandas as pd

            self.start_ = pd.DatetimeIndex(timestamps)[-1] + pd.Timedelta(freq)
        self.models_ = [self._member(m).fit(arr, freq=freq, timestamps=timestamps) for m in self.members]
        self._internal_backtest(arr, freq, s)
        return self

    def _internal_backtest(self, arr: FloatArray, freq: str, s: int) -> None:
        """Weights and scaled errors from origins inside the training series (see the module doc)."""
        k = len(self.members)
        n = len(arr)
        origins = [n - j * s for j in range(self.n_origins, 0, -1) if n - j * s >= 3 * s]
        abs_err = np.zeros(k)
        count = np.zeros(k)
        fcs_all: list[tuple[FloatArray, FloatArray, float]] = []
        for o in origins:
            train, actual = arr[:o], arr[o:o + s]
            ok = np.isfinite(actual)
            if not ok.any():
                continue
            pts = np.vstack([self._member(m).fit(train, freq=freq).predict(s).point for m in self.members])
            abs_err += np.abs(pts[:, ok] - actual[ok]).sum(axis=1)
            count += ok.sum()
            fcs_all.append((pts, actual, _scale(train, s, 7 * s)))
        if len(fcs_all) < 2 or not np.all(count > 0):
            self.weights_ = np.full(k, 1.0 / k)
            self.scaled_errors_ = np.zeros(0)
        else:
            mae = np.maximum(abs_err / count, 1e-9)
            w = mae ** -self.power
            self.weights_ = w / w.sum()
            errs = []
            for pts, actual, sc in fcs_all:
                e = actual - self.weights_ @ pts
                errs.append(e / sc if np.isfinite(sc) else e * np.nan)
            e_all = np.concatenate(errs)
            self.scaled_errors_ = e_all[np.isfinite(e_all)]
        self.scale_now_ = _scale(self.y_, s, 7 * s)

    def _fit(self, y: FloatArray) -> None:  # pragma: no cover - fit() is overridden
        raise NotImplementedError

    def _point(self, horizon: int) -> FloatArray:
        pts = np.vstack([m.predict(horizon).point for m in self.models_])
        return np.asarray(self.weights_ @ pts, dtype=float)

    def predict(self, horizon: int, quantiles: tuple[float, ...] = DEFAULT_QUANTILES) -> Forecast:
        self.check_fitted()
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        point = np.maximum(self._point(horizon), 0.0)
        levels = sorted(set(DEFAULT_QUANTILES) | {round(float(q), 6) for q in quantiles})
        if len(self.scaled_errors_) >= 10 and np.isfinite(self.scale_now_):
            errors = self.scaled_errors_ * self.scale_now_
        else:  # short history: the seasonal-difference errors, as every simple forecaster
            errors = self._errors()
        qd = quantiles_from_errors(point, errors, np.ones(horizon), levels)
        return Forecast(self.name, qd[0.5], qd, self.freq_, self.start_, path_correlation=self._path_correlation())
