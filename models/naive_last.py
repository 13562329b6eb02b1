"""Last-value naive forecaster (``naive_last``): every future step equals the last observed value.

It is the baseline every short-horizon forecaster must beat, and always a scored candidate in backtests, so
the default chosen on validation can never be worse than it on the validation window.  Its own intervals come
from the in-sample k-step changes ``y[t + k] - y[t]`` for each lead k (each lead its own distribution).
"""

from __future__ import annotations

import numpy as np
from gpufleet.models.forecast_base import DEFAULT_QUANTILES, FloatArray, Forecast, Forecaster, sort_quantiles


class NaiveLast(Forecaster):
    """y[t + k] = y[t] for every lead k."""

    name = "naive_last"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _fit(self, y: FloatArray) -> None:
        self.last_ = float(y[-1])

    def _point(self, horizon: int) -> FloatArray:
        return np.full(horizon, self.last_)

    def rolling_point(self, y: FloatArray, ends: np.ndarray, lead: int) -> FloatArray:
        """Point forecast of ``y[e + lead - 1]`` made with ``y[:e]`` known, for every ``e`` in ``ends``
        (NaN where the last value is missing)."""
        y = np.asarray(y, dtype=float)
        return y[np.asarray(ends) - 1]

    def predict(self, horizon: int, quantiles: tuple[float, ...] = DEFAULT_QUANTILES) -> Forecast:
        self.check_fitted()
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        point = np.maximum(self._point(horizon), 0.0)
        levels = sorted(set(DEFAULT_QUANTILES) | {round(float(q), 6) for q in quantiles})
        qd: dict[float, FloatArray] = {q: np.empty(horizon) for q in levels}
        y = self.y_
        for k in range(1, horizon + 1):
            e = y[k:] - y[:-k] if len(y) > k else np.zeros(1)
            e = e - np.median(e)
            for q in levels:
                qd[q][k - 1] = max(point[k - 1] + float(np.quantile(e, q)), 0.0)
        qd = sort_quantiles(qd)
        return Forecast(self.name, qd[0.5], qd, self.freq_, self.start_, path_correlation=self._path_correlation())
