"""MSTL (statsmodels): daily and weekly seasonal components by STL, trend + remainder by an AR model.

Seasonal components are continued by repeating their last cycle; the deseasonalised series (trend plus
remainder) is forecast by ``statsmodels.tsa.ar_model.AutoReg`` with ``lags`` lags and a constant, which
reverts the short-term deviation towards the recent level.  The weekly period is used only when the series
holds at least two weeks.
"""

from __future__ import annotations

import warnings

import numpy as np
from gpufleet.models.forecast_base import FloatArray, Forecaster, steps_per


class MSTLForecaster(Forecaster):
    """MSTL decomposition (daily [+ weekly]) + AutoReg on the seasonally adjusted series."""

    name = "mstl"

    def __init__(self, season: str | int = "1d", weekly: bool = True, lags: int = 2, window: str | int = "21d",
                 max_steps: int = 48, seed: int = 0) -> None:
        self.season = season
        self.weekly = weekly
        self.lags = lags
        self.window = window
        self.max_steps = max_steps
        self.seed = seed

    def _fit(self, y: FloatArray) -> None:
        from statsmodels.tsa.ar_model import AutoReg
        from statsmodels.tsa.seasonal import MSTL

        s = self.season_
        w = steps_per(self.window, self.freq_) if isinstance(self.window, str) else int(self.window)
        periods = [s] if s > 1 else []
        week = 7 * s
        if self.weekly and s > 1 and len(y) > 2 * week:
            periods.append(week)
            w = max(w, 2 * week + s)
        y = y[-w:] if len(y) > w else y
        self.seasonals_: list[FloatArray] = []
        if periods and len(y) >= 2 * periods[0]:
            # decompose block means (at most max_steps per day), then repeat each block back to the grid
            b = max(1, int(np.ceil(s / self.max_steps)))
            while s % b:
                b += 1
            y = y[len(y) % b:]  # whole blocks only
            yb = y.reshape(-1, b).mean(axis=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = MSTL(yb, periods=[p // b for p in periods], stl_kwargs={"robust": True}).fit()
            seas = np.repeat(np.asarray(res.seasonal, dtype=float).reshape(len(yb), -1), b, axis=0)
            periods = periods[: seas.shape[1]]
            self.periods_ = periods
            self.seasonals_ = [seas[-p:, i] for i, p in enumerate(periods)]
            adj = y - seas.sum(axis=1)
        else:
            self.periods_ = []
            adj = y
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ar_ = AutoReg(adj, lags=self.lags, trend="c").fit()
        self.adj_n_ = len(adj)

    def _point(self, horizon: int) -> FloatArray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = np.asarray(self.ar_.predict(start=self.adj_n_, end=self.adj_n_ + horizon - 1), dtype=float)
        for p, last in zip(self.periods_, self.seasonals_, strict=True):
            base = base + np.tile(last, int(np.ceil(horizon / p)))[:horizon]
        return base

    def _error_scale(self) -> float:
        return 0.85
