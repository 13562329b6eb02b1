"""Global gradient-boosted forecaster (``gbm``): one scikit-learn ``HistGradientBoostingRegressor`` per lead.

Direct multi-step: for each lead k = 1..``horizon`` (or only those in ``leads``; a lead in between is
interpolated linearly from the last value and the modelled leads around it) a model predicts ``y[e + k - 1]``
from what is known at the origin ``e`` (``y[:e]``).  Global: :meth:`GlobalGBM.fit_panel` trains on the rows of many series at once;
:meth:`fit` (the contract) is the one-series case.

Features are level-free, so one model serves series of every size and follows a level shift at once: every
value is taken relative to the last observed value and divided by the series' recent scale (mean absolute
level over the last ``scale_window`` steps, plus 1).  Per origin:

- the last ``lags`` changes ``y[e-1-j] - y[e-1]``;
- rolling mean, standard deviation, min and max over each of ``windows`` (relative to the last value);
- seasonal: the value one ``season`` before the target and one season before the origin (relative to the
  last value), so the model can carry the daily profile's change forward; the same one week back;
- the log level and log scale (how big the series is), the share of zeros in the last day;
- calendar: the target's time of day (slot within the season) and, when timestamps are known, its weekday.

The target is ``(y[e + k - 1] - y[e - 1]) / scale``, the loss the absolute error (the forecast is a median).
Missing values (NaN) stay NaN in the features (the trees route them); rows with a missing target are
dropped.  Own intervals: per lead, the empirical quantiles of the residuals on the last ``cal_share`` of the
training origins, which the per-lead models did not see (a split-conformal calibration); backtests calibrate
again on recent out-of-sample residuals (``analytics.backtest``).  Leads past ``horizon`` follow the
``seasonal_mean``-style daily profile shifted to the last modelled lead's level.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gpufleet.models.forecast_base import (
    DEFAULT_QUANTILES,
    FloatArray,
    Forecast,
    Forecaster,
    cut_as_of,
    sort_quantiles,
    steps_per,
)
from threadpoolctl import threadpool_limits


def _rolling(y: FloatArray, w: int, fn: str) -> FloatArray:
    """Causal rolling statistic: out[i] = fn(y[i-w:i]) (NaN-aware; NaN until one value is seen)."""
    import pandas as pd

    s = pd.Series(y).shift(1).rolling(w, min_periods=1)
    return np.asarray(getattr(s, fn)(), dtype=float)


def _shift(y: FloatArray, k: int) -> FloatArray:
    """out[i] = y[i - k] (NaN outside)."""
    out = np.full(len(y), np.nan)
    if k >= 0:
        if k < len(y):
            out[k:] = y[:len(y) - k]
    else:
        out[:k] = y[-k:]
    return out


class GlobalGBM(Forecaster):
    """Direct multi-step histogram gradient boosting on lag, rolling and calendar features (module doc)."""

    name = "gbm"

    def __init__(self, horizon: int = 6, leads: tuple[int, ...] | None = None, lags: int = 12,
                 windows: tuple[int, ...] = (3, 6, 18, 72), season: str | int = "1d", scale_window: int = 144,
                 max_iter: int = 100, learning_rate: float = 0.05, max_leaf_nodes: int = 15,
                 min_samples_leaf: int = 100, l2_regularization: float = 1.0, max_rows: int = 60_000,
                 cal_share: float = 0.2, n_threads: int = 1, seed: int = 0) -> None:
        self.horizon = horizon
        self.leads = tuple(leads) if leads is not None else None
        self.lags = lags
        self.windows = tuple(windows)
        self.season = season
        self.scale_window = scale_window
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_rows = max_rows
        self.cal_share = cal_share
        self.n_threads = n_threads
        self.seed = seed

    # -- features ------------------------------------------------------------------------------------
    def _features(self, y: FloatArray, lead: int, timestamps: Any = None) -> tuple[FloatArray, FloatArray]:
        """(features of every origin e = 0..n, shape (n + 1, p); scale (n + 1,)) for ``lead``.

        Row e uses ``y[:e]`` only.  The series is padded by one NaN so that the origin just after the last
        value (e = n) gets a row."""
        y = np.append(np.asarray(y, dtype=float), np.nan)
        s = self.season_
        last = _shift(y, 1)
        level = _rolling(np.abs(y), self.scale_window, "mean")
        scale = np.where(np.isfinite(level), level, 0.0) + 1.0
        cols: list[FloatArray] = []
        for j in range(1, self.lags + 1):
            cols.append((_shift(y, j + 1) - last) / scale)
        for w in self.windows:
            cols.append((_rolling(y, w, "mean") - last) / scale)
            cols.append(_rolling(y, w, "std") / scale)
            cols.append((_rolling(y, w, "min") - last) / scale)
            cols.append((_rolling(y, w, "max") - last) / scale)
        for period in (s, 7 * s):
            if period > 1:
                target_ago = _shift(y, period - lead + 1)  # y[e + lead - 1 - period]
                origin_ago = _shift(y, period + 1)         # y[e - 1 - period]
                cols.append((target_ago - last) / scale)
                cols.append((target_ago - origin_ago) / scale)
        cols.append(np.log1p(np.maximum(np.nan_to_num(last, nan=0.0), 0.0)))
        cols.append(np.log(scale))
        cols.append(_rolling((y == 0).astype(float), max(s, 2), "mean"))
        n1 = len(y)
        if timestamps is not None and len(timestamps):
            import pandas as pd

            ts = pd.DatetimeIndex(timestamps)
            step = pd.Timedelta(self.freq_)
            target_t = pd.DatetimeIndex(ts[0] + step * (np.arange(n1) + lead - 1))
            tod = (target_t - target_t.normalize()) / pd.Timedelta(days=1)
            cols.append(np.asarray(tod, dtype=float))
            cols.append(np.asarray(target_t.day_of_week, dtype=float))
        else:  # position within the season, counted from the first value
            cols.append(((np.arange(n1) + lead - 1) % max(s, 1)).astype(float) / max(s, 1))
            cols.append(np.full(n1, np.nan))
        x = np.column_stack(cols)
        x[~np.isfinite(last)] = np.nan  # no last value: nothing relative to it
        return x, scale

    def _rows(self, y: FloatArray, lead: int, timestamps: Any) -> tuple[FloatArray, FloatArray]:
        x, scale = self._features(y, lead, timestamps)
        n = len(y)
        yy = np.append(np.asarray(y, dtype=float), np.nan)
        target = (_shift(yy, -(lead - 1)) - _shift(yy, 1)) / scale  # (y[e+lead-1] - y[e-1]) / scale
        e = np.arange(n + 1)
        ok = np.isfinite(target) & (e >= max(self.lags + 1, 2)) & np.isfinite(x[:, 0])
        return x[ok], target[ok]

    # -- fitting -------------------------------------------------------------------------------------
    def fit(self, y: Any, freq: str = "1h", timestamps: Any = None, as_of: Any = None) -> GlobalGBM:
        arr, timestamps = cut_as_of(y, timestamps, as_of)
        return self.fit_panel([arr], freq=freq, timestamps=[timestamps] if timestamps is not None else None)

    def fit_panel(self, series: list[Any], freq: str = "1h", timestamps: list[Any] | None = None) -> GlobalGBM:
        """Train on every series of ``series`` together (each a 1-D array on the ``freq`` grid, NaN =
        missing; ``timestamps``: one index per series, or None).  The last series is the one :meth:`predict`
        forecasts from."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        if not series:
            raise ValueError(f"{self.name}: no series to fit")
        arrs = [np.asarray(s, dtype=float).ravel() for s in series]
        if max(int(np.isfinite(a).sum()) for a in arrs) < 3:
            raise ValueError(f"{self.name}: need at least 3 observations")
        if self.horizon < 1:
            raise ValueError(f"{self.name}: horizon must be >= 1")
        self.freq_ = freq
        self.season_ = max(1, steps_per(self.season, freq))
        tss = timestamps if timestamps is not None else [None] * len(arrs)
        rng = np.random.default_rng(self.seed)
        self.leads_ = tuple(sorted({int(k) for k in (self.leads or range(1, self.horizon + 1))
                                    if 1 <= int(k) <= self.horizon})) or (self.horizon,)
        self.models_: dict[int, Any] = {}
        self.residuals_: dict[int, FloatArray] = {}
        self.dead_: dict[int, np.ndarray] = {}
        for lead in self.leads_:
            xs, ts_, cal_x, cal_t = [], [], [], []
            for a, t in zip(arrs, tss, strict=True):
                x, tg = self._rows(a, lead, t)
                ncal = int(len(tg) * self.cal_share)
                xs.append(x[:len(tg) - ncal])
                ts_.append(tg[:len(tg) - ncal])
                cal_x.append(x[len(tg) - ncal:])
                cal_t.append(tg[len(tg) - ncal:])
            x_all, t_all = np.vstack(xs), np.concatenate(ts_)
            if len(t_all) < 10:  # too short to learn: predict no change
                self.models_[lead] = None
                self.residuals_[lead] = np.concatenate(cal_t) if cal_t else np.zeros(1)
                continue
            if len(t_all) > self.max_rows:  # keep the most recent rows, subsampled evenly
                pick = np.sort(rng.choice(len(t_all), self.max_rows, replace=False))
                x_all, t_all = x_all[pick], t_all[pick]
            m = HistGradientBoostingRegressor(
                loss="absolute_error", max_iter=self.max_iter, learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=min(self.min_samples_leaf,
                                                                         max(2, len(t_all) // 20)),
                l2_regularization=self.l2_regularization, early_stopping=False, random_state=self.seed)
            dead = np.asarray(~np.isfinite(x_all).any(axis=0))  # e.g. the weekly lag on under a week of data
            x_all[:, dead] = 0.0
            self.dead_[lead] = dead
            with threadpool_limits(limits=self.n_threads):
                m.fit(x_all, t_all)
            self.models_[lead] = m
            cx, ct = np.vstack(cal_x), np.concatenate(cal_t)
            cx[:, dead] = 0.0
            with threadpool_limits(limits=self.n_threads):
                self.residuals_[lead] = ct - m.predict(cx) if len(ct) else np.zeros(1)
        last = arrs[-1]
        self.raw_ = last
        self.y_ = np.where(np.isfinite(last), last, np.nan)
        self.timestamps_ = tss[-1]
        self.start_ = None
        if tss[-1] is not None and len(tss[-1]):
            import pandas as pd

            self.start_ = pd.DatetimeIndex(tss[-1])[-1] + pd.Timedelta(freq)
        return self

    def _fit(self, y: FloatArray) -> None:  # pragma: no cover - fit() is overridden
        raise NotImplementedError

    # -- forecasting ---------------------------------------------------------------------------------
    def rolling_point(self, y: FloatArray, ends: np.ndarray, lead: int, timestamps: Any = None,
                      with_scale: bool = False) -> Any:
        """Point forecast of ``y[e + lead - 1]`` made with ``y[:e]`` known, for every ``e`` in ``ends``
        (the fitted models are not retrained: later origins see later actuals as features only)."""
        self.check_fitted()
        if not 1 <= lead <= self.horizon:
            raise ValueError(f"{self.name}: lead {lead} outside the fitted 1..{self.horizon}")
        ends = np.asarray(ends, dtype=int)
        yy = np.asarray(y, dtype=float)
        last = yy[ends - 1]
        if lead not in self.models_:  # between modelled leads: linear from the last value (lead 0)
            below = [k for k in self.leads_ if k < lead]
            above = [k for k in self.leads_ if k > lead]
            k1 = min(above) if above else max(self.leads_)
            p1, scale = self.rolling_point(yy, ends, k1, timestamps, with_scale=True)
            k0 = max(below) if below else 0
            p0 = self.rolling_point(yy, ends, k0, timestamps) if k0 else last
            w = (lead - k0) / (k1 - k0) if k1 > k0 else 1.0
            pt = np.maximum(p0 + w * (p1 - p0), 0.0)
            return (pt, scale) if with_scale else pt
        x, scale = self._features(yy, lead, timestamps)
        x, scale = x[ends], scale[ends]
        m = self.models_[lead]
        if m is not None:
            x[:, self.dead_[lead]] = 0.0
            with threadpool_limits(limits=self.n_threads):
                d = m.predict(x)
        else:
            d = np.zeros(len(ends))
        pt = np.maximum(last + d * scale, 0.0)
        return (pt, scale) if with_scale else pt

    def predict(self, horizon: int, quantiles: tuple[float, ...] = DEFAULT_QUANTILES) -> Forecast:
        self.check_fitted()
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        from gpufleet.models.forecast_base import fill_missing

        y = self.y_
        n = len(y)
        if not np.isfinite(y[-1]):  # the last value is missing: forecast from the filled series
            y = fill_missing(y, self.season_)
        levels = sorted(set(DEFAULT_QUANTILES) | {round(float(q), 6) for q in quantiles})
        k_max = min(horizon, self.horizon)
        point = np.empty(horizon)
        qd: dict[float, FloatArray] = {q: np.empty(horizon) for q in levels}
        for k in range(1, k_max + 1):
            pt, sc = self.rolling_point(y, np.array([n]), k, self.timestamps_, with_scale=True)
            point[k - 1] = pt[0]
            e = self.residuals_[min(self.residuals_, key=lambda j: abs(j - k))]
            e = e[np.isfinite(e)] if len(e) else np.zeros(1)
            e = (e if len(e) else np.zeros(1)) - (np.median(e) if len(e) else 0.0)
            for q in levels:
                qd[q][k - 1] = max(pt[0] + float(np.quantile(e, q)) * sc[0], 0.0)
        if horizon > k_max:  # past the modelled leads: the daily profile, shifted to the last modelled level
            filled = fill_missing(y, self.season_)
            s = self.season_ if n >= self.season_ else 1
            cycles = max(1, min(7, n // s))
            profile = filled[n - cycles * s:].reshape(cycles, s).mean(axis=0)
            steps = np.arange(n, n + horizon) % s
            shift = point[k_max - 1] - profile[(n + k_max - 1) % s]
            for k in range(k_max + 1, horizon + 1):
                point[k - 1] = max(profile[steps[k - 1]] + shift, 0.0)
                for q in levels:
                    qd[q][k - 1] = max(point[k - 1] + (qd[q][k_max - 1] - point[k_max - 1]), 0.0)
        for q in levels:
            if q == 0.5:
                qd[q] = point.copy()
        qd = sort_quantiles(qd)
        return Forecast(self.name, qd[0.5], qd, self.freq_, self.start_)
