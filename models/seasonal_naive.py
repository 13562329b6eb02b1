"""Seasonal naive forecasters: tomorrow looks like today (daily) or like the same day last week (weekly).

``seasonal_naive_daily`` is the scale of MASE in every backtest.  ``seasonal_mean`` averages the same slot
over the last ``cycles`` days, a robust smoother of the daily profile.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from gpufleet.models.forecast_base import FloatArray, Forecaster


class _SeasonalNaive(Forecaster):
    default_season: ClassVar[str] = "1d"

    def __init__(self, season: str | int | None = None, seed: int = 0) -> None:
        self.season = season if season is not None else self.default_season
        self.seed = seed

    def _fit(self, y: FloatArray) -> None:
        s = self.season_ if len(y) >= self.season_ else 1
        self.last_cycle_ = y[-s:]

    def _point(self, horizon: int) -> FloatArray:
        reps = int(np.ceil(horizon / len(self.last_cycle_)))
        return np.tile(self.last_cycle_, reps)[:horizon]

    def rolling_point(self, y: FloatArray, ends: np.ndarray, lead: int) -> FloatArray:
        """Point forecast of ``y[e + lead - 1]`` made with ``y[:e]`` known, for every ``e`` in ``ends``:
        the value one season before the target (one season before that when the lead passes a season)."""
        y = np.asarray(y, dtype=float)
        s = self.season_
        back = s * int(np.ceil(lead / s))
        idx = np.asarray(ends) + lead - 1 - back
        out = np.full(len(idx), np.nan)
        ok = idx >= 0
        out[ok] = y[idx[ok]]
        return out

    def _errors(self) -> FloatArray:
        s = len(self.last_cycle_)
        return self.y_[s:] - self.y_[:-s] if len(self.y_) > s else np.zeros(1)


class SeasonalNaiveDaily(_SeasonalNaive):
    """y[t + h] = y[t + h - 1 day]."""

    name = "seasonal_naive_daily"
    default_season = "1d"


class SeasonalNaiveWeekly(_SeasonalNaive):
    """y[t + h] = y[t + h - 7 days] (falls back to the last value when under a week of data)."""

    name = "seasonal_naive_weekly"
    default_season = "7d"


class SeasonalMean(Forecaster):
    """Mean of the same time-of-day slot over the last ``cycles`` days, shifted to the recent level.

    The level shift is ``level_weight`` x (mean of the last ``recent`` steps minus the profile's mean over
    the same slots): with 0 it is a pure profile, with 1 it follows the latest level.
    """

    name = "seasonal_mean"

    def __init__(self, season: str | int = "1d", cycles: int = 7, level_weight: float = 0.5,
                 recent: str | int = "6h", seed: int = 0) -> None:
        self.season = season
        self.cycles = cycles
        self.level_weight = level_weight
        self.recent = recent
        self.seed = seed

    def _fit(self, y: FloatArray) -> None:
        from gpufleet.models.forecast_base import steps_per

        s = self.season_
        k = max(1, min(self.cycles, len(y) // s))
        block = y[len(y) - k * s:].reshape(k, s)
        self.profile_ = block.mean(axis=0)
        r = max(1, min(steps_per(self.recent, self.freq_), s))
        shift = float(np.mean(y[-r:]) - np.mean(self.profile_[-r:]))
        self.shift_ = self.level_weight * shift

    def _point(self, horizon: int) -> FloatArray:
        reps = int(np.ceil(horizon / len(self.profile_)))
        return np.tile(self.profile_, reps)[:horizon] + self.shift_

    def _error_scale(self) -> float:
        return 0.8
