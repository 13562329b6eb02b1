"""The demand-forecaster contract: ``fit(y, freq=...) -> self``, ``predict(horizon, quantiles) -> Forecast``.

Every forecaster of kind ``"forecast"`` takes a 1-D series on a regular grid (``y``; NaN marks a missing
step, e.g. an outage) with its step length ``freq`` (pandas-style: ``"10min"``, ``"1h"``) and, optionally,
the timestamp of the first value.  ``predict`` returns a :class:`Forecast`: the point forecast (the median),
the requested quantiles (at least :data:`DEFAULT_QUANTILES`) and ``sample_paths(n, seed)`` for the planner.

Intervals are built the same way for every model unless it overrides :meth:`Forecaster._spread`: from the
model's own in-sample errors at the seasonal lag (the error of a one-season-ahead forecast), widened with
the horizon step.  They are usually too narrow or too wide on real traces; ``analytics.backtest`` calibrates
them conformally from rolling-origin backtest errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from gpufleet.models.base import Model, unique_names
from numpy.typing import NDArray

DEFAULT_QUANTILES: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)

FloatArray = NDArray[np.float64]


def steps_per(period: str | int, freq: str) -> int:
    """Number of ``freq`` steps in ``period`` ("1d", "7d", "1h", or an int already in steps)."""
    if isinstance(period, int):
        return period
    p = _seconds(period)
    f = _seconds(freq)
    if p % f:
        raise ValueError(f"period {period!r} is not a whole number of {freq!r} steps")
    return p // f


def _seconds(text: str) -> int:
    t = text.strip().lower()
    units = {"min": 60, "t": 60, "s": 1, "h": 3600, "d": 86400, "w": 604800}
    for suffix in ("min", "s", "h", "d", "w", "t"):
        if t.endswith(suffix):
            num = t[: -len(suffix)] or "1"
            try:
                return int(float(num) * units[suffix])
            except ValueError:
                break
    raise ValueError(f"cannot read duration {text!r} (use e.g. 10min, 1h, 1d, 7d)")


def fill_missing(y: FloatArray, season: int) -> FloatArray:
    """Fill NaN steps with the median of the same seasonal slot over the other cycles, then by interpolation.

    Used by every forecaster for fitting only; scoring skips missing steps (see analytics.forecast).
    """
    y = np.asarray(y, dtype=float).copy()
    miss = ~np.isfinite(y)
    if not miss.any():
        return y
    if miss.all():
        raise ValueError("the series has no observed value")
    if season > 1 and len(y) >= 2 * season:
        slots = np.arange(len(y)) % season
        for s in np.unique(slots[miss]):
            vals = y[(slots == s) & ~miss]
            if len(vals):
                y[(slots == s) & miss] = float(np.median(vals))
    miss = ~np.isfinite(y)
    if miss.any():
        idx = np.arange(len(y))
        y[miss] = np.interp(idx[miss], idx[~miss], y[~miss])
    return y


@dataclass
class Forecast:
    """A probabilistic forecast for ``horizon`` steps after the end of the training series."""

    model: str
    point: FloatArray                     # median forecast, shape (h,)
    quantiles: dict[float, FloatArray]    # level -> values, shape (h,) each, non-crossing
    freq: str
    start: Any = None                     # timestamp of the first forecast step, if known
    path_correlation: float = 0.9         # lag-1 correlation of the Gaussian copula used by sample_paths
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return len(self.point)

    def levels(self) -> list[float]:
        return sorted(self.quantiles)

    def quantile(self, q: float) -> FloatArray:
        """The q-quantile (interpolated linearly between the stored levels, clamped at the ends)."""
        if q in self.quantiles:
            return self.quantiles[q]
        lv = self.levels()
        qs = np.vstack([self.quantiles[v] for v in lv])
        return np.array([np.interp(q, lv, qs[:, j]) for j in range(qs.shape[1])])

    def interval(self, coverage: float) -> tuple[FloatArray, FloatArray]:
        a = (1 - coverage) / 2
        return self.quantile(round(a, 6)), self.quantile(round(1 - a, 6))

    def sample_paths(self, n: int, seed: int = 0) -> FloatArray:
        """``n`` sample paths, shape (n, horizon): a Gaussian copula with AR(1) correlation across steps,
        mapped through each step's quantile function (linear between levels, tails extrapolated linearly)."""
        rng = np.random.default_rng(seed)
        h = self.horizon
        rho = float(np.clip(self.path_correlation, 0.0, 0.999))
        z = np.empty((n, h))
        z[:, 0] = rng.standard_normal(n)
        innov = np.sqrt(1 - rho ** 2)
        for t in range(1, h):
            z[:, t] = rho * z[:, t - 1] + innov * rng.standard_normal(n)
        from scipy.stats import norm

        u = norm.cdf(z)
        lv = np.array(self.levels())
        qs = np.vstack([self.quantiles[v] for v in lv])  # (k, h)
        # extend the ends to u=0.001 / 0.999 linearly in normal scores
        zl = norm.ppf(lv)
        out = np.empty_like(u)
        for t in range(h):
            col = qs[:, t]
            slope_lo = (col[1] - col[0]) / (zl[1] - zl[0]) if zl[1] != zl[0] else 0.0
            slope_hi = (col[-1] - col[-2]) / (zl[-1] - zl[-2]) if zl[-1] != zl[-2] else 0.0
            zz = z[:, t]
            v = np.interp(u[:, t], lv, col)
            v = np.where(zz < zl[0], col[0] + slope_lo * (zz - zl[0]), v)
            v = np.where(zz > zl[-1], col[-1] + slope_hi * (zz - zl[-1]), v)
            out[:, t] = v
        if self.extras.get("nonnegative", True):
            out = np.maximum(out, 0.0)
        return out


class Forecaster(Model):
    """Base class of demand forecasters (kind ``"forecast"``).

    Subclasses implement :meth:`_fit` (on a NaN-free series) and :meth:`_point` (the h-step point forecast).
    """

    kind: ClassVar[str] = "forecast"
    #: True when the model can be fitted in well under a second on a month of hourly data
    fast: ClassVar[bool] = True

    season: str | int
    freq_: str
    y_: FloatArray
    season_: int
    start_: Any

    def fit(self, y: Any, freq: str = "1h", timestamps: Any = None, as_of: Any = None) -> Forecaster:
        """Fit on ``y`` (regular grid of step ``freq``; NaN = missing). ``timestamps`` (optional) gives the
        time of each value; ``as_of`` (optional) cuts the series at that time: nothing later is used."""
        arr, timestamps = cut_as_of(y, timestamps, as_of)
        if len(arr) < 3:
            raise ValueError(f"{self.name}: need at least 3 observations, got {len(arr)}")
        self.freq_ = freq
        self.season_ = max(1, steps_per(self.season, freq)) if getattr(self, "season", None) else 1
        self.raw_ = arr
        self.y_ = fill_missing(arr, self.season_)
        self.start_ = None
        if timestamps is not None and len(timestamps):
            import pandas as pd

            self.start_ = pd.DatetimeIndex(timestamps)[-1] + pd.Timedelta(freq)
        self._fit(self.y_)
        return self

    def predict(self, horizon: int, quantiles: tuple[float, ...] = DEFAULT_QUANTILES) -> Forecast:
        """Forecast ``horizon`` steps; quantiles always include :data:`DEFAULT_QUANTILES`."""
        self.check_fitted()
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        point = np.asarray(self._point(horizon), dtype=float)
        point = np.maximum(point, 0.0)
        levels = sorted(set(DEFAULT_QUANTILES) | {round(float(q), 6) for q in quantiles})
        spread = self._spread(horizon)  # (h,) scale of a standardised error
        qd = quantiles_from_errors(point, self._errors(), spread, levels)
        return Forecast(self.name, qd.get(0.5, point), qd, self.freq_, self.start_,
                        path_correlation=self._path_correlation())

    # -- hooks ---------------------------------------------------------------------------------------
    def _fit(self, y: FloatArray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _point(self, horizon: int) -> FloatArray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _errors(self) -> FloatArray:
        """In-sample errors used for the intervals: y_t minus the model-free seasonal forecast y_{t-s},
        rescaled by ``_error_scale`` (models smoother than seasonal naive have smaller errors)."""
        s = self.season_ if self.season_ > 1 and len(self.y_) > self.season_ + 2 else 1
        e = self.y_[s:] - self.y_[:-s]
        return e * self._error_scale()

    def _error_scale(self) -> float:
        return 1.0

    def _spread(self, horizon: int) -> FloatArray:
        return np.ones(horizon)

    def _path_correlation(self) -> float:
        e = self._errors()
        if len(e) < 4 or np.std(e) == 0:
            return 0.9
        r = float(np.corrcoef(e[:-1], e[1:])[0, 1])
        return float(np.clip(r if np.isfinite(r) else 0.9, 0.3, 0.98))


def quantiles_from_errors(point: FloatArray, errors: FloatArray, spread: FloatArray,
                          levels: list[float]) -> dict[float, FloatArray]:
    """Quantiles = point + empirical quantile of the errors (centred at their median) x spread; non-crossing."""
    e = np.asarray(errors, dtype=float)
    e = e[np.isfinite(e)]
    if len(e) == 0:
        e = np.zeros(1)
    e = e - np.median(e)
    out: dict[float, FloatArray] = {}
    for q in levels:
        out[q] = np.maximum(point + float(np.quantile(e, q)) * spread, 0.0)
    return sort_quantiles(out)


def cut_as_of(y: Any, timestamps: Any, as_of: Any) -> tuple[FloatArray, Any]:
    """``y`` as floats and its ``timestamps``, cut at ``as_of`` when both are given (nothing later kept)."""
    arr = np.asarray(y, dtype=float).ravel()
    if timestamps is not None and as_of is not None:
        import pandas as pd

        ts = pd.DatetimeIndex(timestamps)
        keep = np.asarray(ts <= pd.Timestamp(as_of))
        arr, timestamps = arr[keep], ts[keep]
    return arr, timestamps


def sort_quantiles(qd: dict[float, FloatArray]) -> dict[float, FloatArray]:
    """Make quantiles non-crossing by sorting across levels at every step."""
    lv = sorted(qd)
    m = np.sort(np.vstack([qd[v] for v in lv]), axis=0)
    return {v: m[i] for i, v in enumerate(lv)}


def forecasters() -> dict[str, type[Model]]:
    """The demand forecasters by unique name: their one registry, written out here (nothing registers
    itself at import). The backtest, the planner and the CLI read this."""
    from gpufleet.models.adaptive_combo import AdaptiveCombination
    from gpufleet.models.combination import Combination
    from gpufleet.models.ensemble import Ensemble
    from gpufleet.models.ets import ETS
    from gpufleet.models.gbm_forecast import GlobalGBM
    from gpufleet.models.lstm_forecast import LSTMForecaster
    from gpufleet.models.mstl import MSTLForecaster
    from gpufleet.models.naive_last import NaiveLast
    from gpufleet.models.seasonal_naive import SeasonalMean, SeasonalNaiveDaily, SeasonalNaiveWeekly
    from gpufleet.models.theta import Theta

    classes: tuple[type[Model], ...] = (SeasonalNaiveDaily, SeasonalNaiveWeekly, SeasonalMean, NaiveLast, ETS, Theta,
                                        MSTLForecaster, LSTMForecaster, Ensemble, Combination, GlobalGBM,
                                        AdaptiveCombination)
    return unique_names(classes)
