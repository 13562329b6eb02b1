"""The contract of every failure predictor: windows of telemetry in, probability per horizon out.

Input layout (built by ``analytics.datasets``):

- ``X``: float32 array ``(n_windows, n_steps, n_features)`` of raw values in base units; steps where
  a field is missing hold 0 and are marked 0 in ``mask``;
- ``mask``: array of the same shape, 1 where the value was observed, 0 where the field is
  unsupported or the sample is missing (a masked value is never treated as a reading of 0);
- ``y``: int array ``(n_windows, n_horizons)``: 1 if the GPU failed within that horizon after the
  window's end.

Models normalise with statistics they learn in ``fit`` (so only from the training data they are
given) and return a :class:`FailureProba`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from gpufleet.models.base import Model


def horizon_label(seconds: float) -> str:
    """A short horizon name: 3600 -> "1h", 86400 -> "24h", 604800 -> "7d"."""
    s = round(seconds)
    if s % 86400 == 0 and s >= 7 * 86400:
        return f"{s // 86400}d"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_horizon(text: str | float) -> float:
    """A horizon in seconds from a label ("30m", "1h", "24h", "7d") or a number of seconds."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        t = text.strip().lower()
        unit = _UNITS.get(t[-1:]) if t else None
        try:
            seconds = float(t[:-1]) * unit if unit is not None else float(t)
        except ValueError:
            raise ValueError(f"a horizon is a number with a unit (30m, 1h, 24h, 7d), got {text!r}") from None
    if not np.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a horizon must be positive, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Risk:
    """One GPU's failure risk with the horizon it is for: P(failure within ``horizon_s`` seconds) = ``p``.

    The one value risk travels as, from the model (:meth:`FailureProba.risks`) to the allocator, the
    remediation and the exported metric, so nobody has to assume a horizon. :meth:`over` converts it to
    another horizon and :attr:`hazard_per_hour` to a rate, both reading the risk as a constant hazard over
    its horizon.
    """

    p: float
    horizon_s: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0 or self.p != self.p:
            raise ValueError(f"a risk is a probability in [0, 1], got {self.p!r}")
        if not self.horizon_s > 0 or not np.isfinite(self.horizon_s):
            raise ValueError(f"a risk horizon must be positive seconds, got {self.horizon_s!r}")

    @classmethod
    def of(cls, p: float, horizon: str | float) -> Risk:
        """``Risk.of(0.2, "24h")``: from a horizon label or seconds."""
        return cls(float(p), parse_horizon(horizon))

    @property
    def horizon_h(self) -> float:
        return self.horizon_s / 3600.0

    @property
    def label(self) -> str:
        return horizon_label(self.horizon_s)

    @property
    def hazard_per_hour(self) -> float:
        """The constant failure rate per hour that gives ``p`` within the horizon."""
        return float(-np.log1p(-min(self.p, 1.0 - 1e-12)) / self.horizon_h)

    def over(self, horizon: str | float) -> Risk:
        """The same hazard over another horizon: ``1 - (1 - p) ** (new / old)``."""
        h = parse_horizon(horizon)
        if h == self.horizon_s:
            return self
        return Risk(float(-np.expm1(np.log1p(-min(self.p, 1.0 - 1e-12)) * h / self.horizon_s)), h)


def hazard_per_hour(p: np.ndarray, horizon_s: float) -> np.ndarray:
    """Array form of :attr:`Risk.hazard_per_hour`: probabilities within ``horizon_s`` -> rate per hour."""
    return np.asarray(-np.log1p(-np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0 - 1e-12)) / (horizon_s / 3600.0))


@dataclass(frozen=True)
class FailureProba:
    """Failure probabilities: ``proba[i, j]`` = P(window i's GPU fails within ``horizons[j]``)."""

    proba: np.ndarray
    horizons: tuple[float, ...]
    model: str

    def __post_init__(self) -> None:
        if self.proba.ndim != 2 or self.proba.shape[1] != len(self.horizons):
            raise ValueError(f"proba must be (n, {len(self.horizons)}), got {self.proba.shape}")

    def column(self, horizon: float | str) -> np.ndarray:
        """The probabilities for one horizon (seconds or label such as "24h")."""
        labels = [horizon_label(h) for h in self.horizons]
        key = horizon if isinstance(horizon, str) else horizon_label(horizon)
        if key not in labels:
            raise KeyError(f"{self.model}: no horizon {key!r} (have {labels})")
        return self.proba[:, labels.index(key)]

    def risks(self, horizon: float | str) -> list[Risk]:
        """One :class:`Risk` per row for ``horizon``; a horizon the model lacks is converted from the
        nearest one it has (constant hazard)."""
        want = parse_horizon(horizon)
        if not self.horizons:
            raise KeyError(f"{self.model}: no horizons")
        j = int(np.argmin([abs(np.log(h / want)) for h in self.horizons]))
        return [Risk(float(np.clip(p, 0.0, 1.0)), self.horizons[j]).over(want) for p in self.proba[:, j]]


@dataclass(frozen=True)
class FitInfo:
    """What a failure model learnt from: kept for the registry's metadata."""

    feature_names: tuple[str, ...]
    horizons: tuple[float, ...]
    n_windows: int
    n_positive: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)


def check_inputs(X: Any, mask: Any, y: np.ndarray | None = None) -> None:
    """Raise ValueError unless X, mask (and y) have the documented shapes."""
    if len(X.shape) != 3:
        raise ValueError(f"X must be (n_windows, n_steps, n_features), got shape {X.shape}")
    if mask.shape != X.shape:
        raise ValueError(f"mask shape {mask.shape} differs from X shape {X.shape}")
    if y is not None and (y.ndim != 2 or y.shape[0] != X.shape[0]):
        raise ValueError(f"y must be (n_windows, n_horizons), got {y.shape}")


class FailureModel(Model):
    """Base class of failure predictors (kind "failure")."""

    kind: ClassVar[str] = "failure"
    seed: int
    window_s: float = 6 * 3600.0
    """Hyperparameter of every failure model: the length of the telemetry window it reads (seconds)."""
    input_step_s: float | None = None
    """Hyperparameter: the grid step its input is coarsened to (None: the panel's own step)."""

    feature_names_: tuple[str, ...]
    horizons_: tuple[float, ...]

    def fit(self, X: Any, mask: Any, y: np.ndarray, *, feature_names: Sequence[str],
            horizons: Sequence[float]) -> FailureModel:
        """X / mask: arrays or lazy views indexable by row arrays (see analytics.datasets)."""
        raise NotImplementedError

    def predict_proba(self, X: Any, mask: Any) -> FailureProba:
        raise NotImplementedError

    def _remember(self, X: Any, mask: Any, y: np.ndarray, feature_names: Sequence[str],
                  horizons: Sequence[float]) -> None:
        check_inputs(X, mask, y)
        if len(feature_names) != X.shape[2]:
            raise ValueError(f"{len(feature_names)} feature names for {X.shape[2]} features")
        if len(horizons) != y.shape[1]:
            raise ValueError(f"{len(horizons)} horizons for {y.shape[1]} label columns")
        self.feature_names_ = tuple(feature_names)
        self.horizons_ = tuple(float(h) for h in horizons)
        self.fit_info_ = FitInfo(self.feature_names_, self.horizons_, int(X.shape[0]),
                                 tuple(int(v) for v in y.sum(axis=0)))

    def _result(self, proba: np.ndarray) -> FailureProba:
        return FailureProba(np.clip(proba.astype(np.float64), 0.0, 1.0), self.horizons_, self.name)

    def feature_index(self, name: str) -> int | None:
        """Index of a feature by name, or None when the model was fitted without it."""
        return self.feature_names_.index(name) if name in self.feature_names_ else None


def iter_chunks(X: Any, mask: Any, chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(X, mask) row blocks as arrays; X and mask may be arrays or lazy views indexable by row arrays."""
    n = X.shape[0]
    for i in range(0, n, chunk):
        rows = np.arange(i, min(i + chunk, n))
        yield np.asarray(X[rows]), np.asarray(mask[rows])


def calibration_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Fit / calibration row indices: the LAST ``fraction`` of rows (rows come in time order)."""
    n_cal = round(n * fraction) if fraction > 0 else 0
    n_cal = min(max(n_cal, 0), max(n - 1, 0))
    return np.arange(0, n - n_cal), np.arange(n - n_cal, n)


class Calibrator:
    """Maps raw scores to probabilities for one horizon: isotonic with enough positives, else Platt."""

    def __init__(self, min_isotonic_positives: int = 30) -> None:
        self.min_isotonic_positives = min_isotonic_positives
        self.method = "identity"
        self._iso: Any = None
        self._platt: tuple[float, float] | None = None
        self._const: float | None = None
        self._use_logit = True

    def fit(self, scores: np.ndarray, y: np.ndarray) -> Calibrator:
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import LogisticRegression

        scores = np.asarray(scores, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        pos = int(y.sum())
        if len(y) == 0:
            return self
        if pos == 0 or pos == len(y):
            self.method, self._const = "constant", (pos + 0.5) / (len(y) + 1.0)
        elif pos >= self.min_isotonic_positives:
            self.method = "isotonic"
            self._iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, y)
        else:
            self._use_logit = bool(scores.min() >= 0.0 and scores.max() <= 1.0)
            lr = LogisticRegression(C=1.0).fit(self._x(scores).reshape(-1, 1), y)
            self.method, self._platt = "platt", (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.method == "constant" and self._const is not None:
            return np.full(scores.shape, self._const)
        if self.method == "isotonic":
            # a tiny monotone share of the raw score breaks isotonic ties without reordering blocks
            return np.clip(self._iso.predict(scores) * (1 - 1e-6) + 1e-6 * _squash(scores), 0, 1)
        if self.method == "platt" and self._platt is not None:
            a, b = self._platt
            return 1.0 / (1.0 + np.exp(-(a * self._x(scores) + b)))
        return np.clip(scores, 0.0, 1.0)

    def _x(self, scores: np.ndarray) -> np.ndarray:
        return _logit(scores) if self._use_logit else scores


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def _squash(s: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(s, -50, 50)))
