"""Theta method (statsmodels ``ThetaModel``): SES with drift on the seasonally adjusted series."""

from __future__ import annotations

import warnings

import numpy as np
from gpufleet.models.forecast_base import FloatArray, Forecaster


class Theta(Forecaster):
    """statsmodels ThetaModel with additive deseasonalisation at the daily period."""

    name = "theta"

    def __init__(self, season: str | int = "1d", theta: float = 2.0, seed: int = 0) -> None:
        self.season = season
        self.theta = theta
        self.seed = seed

    def _fit(self, y: FloatArray) -> None:
        from statsmodels.tsa.forecasting.theta import ThetaModel

        s = self.season_
        deseason = s > 1 and len(y) >= 2 * s
        # a small offset keeps statsmodels' test for multiplicative seasonality away from zeros
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = ThetaModel(y, period=s if deseason else None, deseasonalize=deseason, method="additive")
            self.res_ = m.fit()

    def _point(self, horizon: int) -> FloatArray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(self.res_.forecast(horizon, theta=self.theta), dtype=float)

    def _error_scale(self) -> float:
        return 0.9
