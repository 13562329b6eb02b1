"""Combination forecaster: the median-of-members point forecast and quantile averaging (Vincentization).

Combining a few simple, different models is the most reliable way to beat each of them on unseen series
(M4/M5 competitions).  The members are forecasters from the registry, given by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gpufleet.models.forecast_base import (
    DEFAULT_QUANTILES,
    FloatArray,
    Forecast,
    Forecaster,
    forecasters,
    sort_quantiles,
)


class Ensemble(Forecaster):
    """Average of the members' quantiles (``how="mean"``) or their median (``how="median"``)."""

    name = "ensemble"

    def __init__(self, members: tuple[str, ...] = ("seasonal_mean", "ets", "theta"), how: str = "mean",
                 season: str | int = "1d", seed: int = 0) -> None:
        self.members = tuple(members)
        self.how = how
        self.season = season
        self.seed = seed

    def fit(self, y: Any, freq: str = "1h", timestamps: Any = None, as_of: Any = None) -> Ensemble:
        self.models_: list[Forecaster] = []
        for m in self.members:
            cls = forecasters().get(m)
            if cls is None:
                raise ValueError(f"unknown member forecaster {m!r}")
            inst = cls(seed=self.seed)  # type: ignore[call-arg]
            assert isinstance(inst, Forecaster)
            self.models_.append(inst.fit(y, freq=freq, timestamps=timestamps, as_of=as_of))
        self.freq_ = freq
        self.start_ = self.models_[0].start_
        return self

    def _fit(self, y: FloatArray) -> None:  # pragma: no cover - fit() is overridden
        raise NotImplementedError

    def predict(self, horizon: int, quantiles: tuple[float, ...] = DEFAULT_QUANTILES) -> Forecast:
        self.check_fitted()
        fcs = [m.predict(horizon, quantiles) for m in self.models_]
        agg = np.median if self.how == "median" else np.mean
        qd = {q: agg(np.vstack([f.quantile(q) for f in fcs]), axis=0) for q in fcs[0].levels()}
        qd = sort_quantiles(qd)
        rho = float(np.mean([f.path_correlation for f in fcs]))
        return Forecast(self.name, qd[0.5], qd, self.freq_, self.start_, path_correlation=rho)
