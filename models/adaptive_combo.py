"""Online-weighted combination for short horizons (``adaptive``): it follows whichever member has been right
lately, so a level shift or a new daily rhythm moves it within hours.

Members (default): ``naive_last`` (follows any level at once), ``seasonal_naive_daily`` (carries a rhythm)
and ``gbm`` (the global gradient-boosted model).  At each origin the weight of member m is proportional to
``1 / MAE_m ** power``, MAE over the last ``window`` forecasts of the same lead whose targets are known at the
origin (so nothing later than the origin is used); before ``window // 4`` such forecasts exist the weights are
equal.  ``fit_panel`` trains the global members on many series at once; :meth:`rolling_point` forecasts a
lead from many origins.  ``predict`` weights the members' own forecasts by the weights at the end of the
series (their intervals: averaged quantiles).
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
    forecasters,
    sort_quantiles,
)

MEMBERS: tuple[str, ...] = ("naive_last", "seasonal_naive_daily", "gbm")


class AdaptiveCombination(Forecaster):
    """Members weighted by inverse recent MAE at each origin (module doc)."""

    name = "adaptive"

    def __init__(self, members: tuple[str, ...] = MEMBERS, window: int = 36, power: float = 2.0,
                 season: str | int = "1d", horizon: int = 6, leads: tuple[int, ...] | None = None,
                 gbm: dict[str, Any] | None = None, seed: int = 0) -> None:
        self.members = tuple(members)
        self.window = window
        self.power = power
        self.season = season
        self.horizon = horizon
        self.leads = tuple(leads) if leads is not None else None
        self.gbm = dict(gbm or {})
        self.seed = seed

    def _member(self, name: str) -> Any:
        cls = forecasters().get(name)
        if cls is None:
            raise ValueError(f"unknown member forecaster {name!r}")
        kw: dict[str, Any] = {"seed": self.seed}
        if name.startswith("seasonal_naive") or name == "gbm":
            kw["season"] = self.season if name != "seasonal_naive_weekly" else None
            if kw["season"] is None:
                del kw["season"]
        if name == "gbm":
            kw.update({"horizon": self.horizon, "leads": self.leads, **self.gbm})
        return cls(**kw)

    def fit(self, y: Any, freq: str = "1h", timestamps: Any = None, as_of: Any = None) -> AdaptiveCombination:
        arr, timestamps = cut_as_of(y, timestamps, as_of)
        return self.fit_panel([arr], freq=freq, timestamps=[timestamps] if timestamps is not None else None)

    def fit_panel(self, series: list[Any], freq: str = "1h", timestamps: list[Any] | None = None
                  ) -> AdaptiveCombination:
        """Fit every member: global ones (``fit_panel``) on all series, the others on the last one (their
        rolling forecasts need no per-series state beyond the season)."""
        if not series:
            raise ValueError(f"{self.name}: no series to fit")
        tss = timestamps if timestamps is not None else [None] * len(series)
        self.models_: list[Any] = []
        for name in self.members:
            m = self._member(name)
            if hasattr(m, "fit_panel"):
                m.fit_panel(series, freq=freq, timestamps=tss)
            else:
                m.fit(series[-1], freq=freq, timestamps=tss[-1])
            self.models_.append(m)
        first = self.models_[0]
        self.freq_ = freq
        self.y_ = np.asarray(series[-1], dtype=float)
        self.timestamps_ = tss[-1]
        self.start_ = first.start_
        return self

    def _fit(self, y: FloatArray) -> None:  # pragma: no cover - fit() is overridden
        raise NotImplementedError

    def _member_points(self, y: FloatArray, ends: np.ndarray, lead: int, timestamps: Any) -> FloatArray:
        rows = []
        for m in self.models_:
            if getattr(m, "fit_panel", None) is not None:
                rows.append(m.rolling_point(y, ends, lead, timestamps))
            else:
                rows.append(m.rolling_point(y, ends, lead))
        return np.vstack(rows)

    def weights_at(self, y: FloatArray, ends: np.ndarray, lead: int, timestamps: Any = None) -> FloatArray:
        """Member weights at each origin in ``ends``, shape (members, len(ends))."""
        self.check_fitted()
        y = np.asarray(y, dtype=float)
        ends = np.asarray(ends, dtype=int)
        k = len(self.models_)
        lo = max(1, int(ends.min()) - self.window - lead + 1)
        hist = np.arange(lo, int(ends.max()) + 1)
        pts = self._member_points(y, hist, lead, timestamps)
        tgt_idx = hist + lead - 1
        actual = np.where(tgt_idx < len(y), y[np.minimum(tgt_idx, len(y) - 1)], np.nan)
        err = np.abs(pts - actual)  # (k, len(hist)); NaN where unknown
        w = np.full((k, len(ends)), 1.0 / k)
        for i, e in enumerate(ends):
            j_hi = e - lead - lo  # last origin (index into hist) whose target is known at e
            j_lo = max(0, j_hi - self.window + 1)
            if j_hi < 0:
                continue
            seg = err[:, j_lo:j_hi + 1]
            ok = np.isfinite(seg).all(axis=0)
            if ok.sum() < max(2, self.window // 4):
                continue
            mae = np.maximum(seg[:, ok].mean(axis=1), 1e-9)
            v = mae ** -self.power
            w[:, i] = v / v.sum()
        return w

    def rolling_point(self, y: FloatArray, ends: np.ndarray, lead: int, timestamps: Any = None) -> FloatArray:
        """Point forecast of ``y[e + lead - 1]`` from origin ``e`` for every ``e`` in ``ends``."""
        ends = np.asarray(ends, dtype=int)
        pts = self._member_points(np.asarray(y, dtype=float), ends, lead, timestamps)
        w = self.weights_at(y, ends, lead, timestamps)
        ok = np.isfinite(pts)
        w = np.where(ok, w, 0.0)
        tot = w.sum(axis=0)
        out = np.where(tot > 0, (w * np.nan_to_num(pts)).sum(axis=0) / np.where(tot > 0, tot, 1.0), np.nan)
        return np.maximum(out, 0.0)

    def predict(self, horizon: int, quantiles: tuple[float, ...] = DEFAULT_QUANTILES) -> Forecast:
        self.check_fitted()
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        n = len(self.y_)
        fcs = [m.predict(horizon, quantiles) for m in self.models_]
        lead = min(self.horizon, horizon)
        w = self.weights_at(self.y_, np.array([n]), lead, self.timestamps_)[:, 0] if n > lead + 2 else None
        if w is None or not np.all(np.isfinite(w)):
            w = np.full(len(fcs), 1.0 / len(fcs))
        qd = {q: np.sum([wi * f.quantile(q) for wi, f in zip(w, fcs, strict=True)], axis=0)
              for q in fcs[0].levels()}
        qd = sort_quantiles(qd)
        return Forecast(self.name, qd[0.5], qd, self.freq_, self.start_,
                        path_correlation=float(np.mean([f.path_correlation for f in fcs])))
