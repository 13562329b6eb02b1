"""Event-history risk models for fleets that keep only fault logs (no telemetry).

Rows are (node, anchor time) pairs; features summarise the node's past fault events before the
anchor (built by ``analytics.infinitehbd``); labels say whether a GPU fault starts within each horizon.

- :class:`RateOnlyEvents` (``events_rate``): the node's past GPU-fault rate, shrunk towards the fleet
  rate (empirical Bayes), as a Poisson probability ``1 - exp(-rate * H)`` (the simplest baseline);
- :class:`EventHistoryModel` (``events_logistic``): logistic regression on recency, counts over several
  look-backs and fault classes; unweighted so its probabilities stay calibrated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from gpufleet.models.base import Model
from gpufleet.models.failure_base import FailureProba

RATE_FEATURE = "gpu_faults_total"
EXPOSURE_FEATURE = "observed_days"


class EventModel(Model):
    """Base of event-history models (kind "events"): 2-D features in, probability per horizon out."""

    kind: ClassVar[str] = "events"
    seed: int
    feature_names_: tuple[str, ...]
    horizons_: tuple[float, ...]

    def fit(self, Z: np.ndarray, y: np.ndarray, *, feature_names: Sequence[str],
            horizons: Sequence[float]) -> EventModel:
        raise NotImplementedError

    def predict_proba(self, Z: np.ndarray) -> FailureProba:
        raise NotImplementedError

    def _remember(self, Z: np.ndarray, y: np.ndarray, feature_names: Sequence[str], horizons: Sequence[float]) -> None:
        if Z.ndim != 2 or len(feature_names) != Z.shape[1]:
            raise ValueError(f"Z must be (n, {len(feature_names)}), got {Z.shape}")
        if y.ndim != 2 or y.shape != (Z.shape[0], len(horizons)):
            raise ValueError(f"y must be (n, {len(horizons)}), got {y.shape}")
        self.feature_names_ = tuple(feature_names)
        self.horizons_ = tuple(float(h) for h in horizons)


class RateOnlyEvents(EventModel):
    """P(fault within H) = 1 - exp(-rate * H); rate = (faults + k * fleet_rate * ...) shrunk to the fleet."""

    name = "events_rate"

    def __init__(self, prior_days: float = 30.0, seed: int = 0) -> None:
        self.prior_days = prior_days
        self.seed = seed

    def _rate(self, Z: np.ndarray) -> np.ndarray:
        i = self.feature_names_.index(RATE_FEATURE)
        j = self.feature_names_.index(EXPOSURE_FEATURE)
        return (Z[:, i] + self.prior_days * self.fleet_rate_) / (Z[:, j] + self.prior_days)

    def fit(self, Z: np.ndarray, y: np.ndarray, *, feature_names: Sequence[str],
            horizons: Sequence[float]) -> RateOnlyEvents:
        self._remember(Z, y, feature_names, horizons)
        for f in (RATE_FEATURE, EXPOSURE_FEATURE):
            if f not in self.feature_names_:
                raise ValueError(f"{self.name} needs feature {f!r}")
        i = self.feature_names_.index(RATE_FEATURE)
        j = self.feature_names_.index(EXPOSURE_FEATURE)
        self.fleet_rate_ = float(Z[:, i].sum() / max(Z[:, j].sum(), 1e-9))  # faults per day
        return self

    def predict_proba(self, Z: np.ndarray) -> FailureProba:
        self.check_fitted()
        rate = self._rate(Z)
        p = np.stack([1.0 - np.exp(-rate * h / 86400.0) for h in self.horizons_], axis=1)
        return FailureProba(p, self.horizons_, self.name)


class EventHistoryModel(EventModel):
    """Logistic regression per horizon on log-scaled event-history features."""

    name = "events_logistic"

    def __init__(self, C: float = 1.0, seed: int = 0) -> None:
        self.C = C
        self.seed = seed

    def fit(self, Z: np.ndarray, y: np.ndarray, *, feature_names: Sequence[str],
            horizons: Sequence[float]) -> EventHistoryModel:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self._remember(Z, y, feature_names, horizons)
        self.estimators_: list[Any] = []
        for k in range(y.shape[1]):
            if y[:, k].min() == y[:, k].max():
                self.estimators_.append(float(y[:, k].mean()))
                continue
            est = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed))
            self.estimators_.append(est.fit(np.log1p(np.maximum(Z, 0)), y[:, k]))
        return self

    def predict_proba(self, Z: np.ndarray) -> FailureProba:
        self.check_fitted()
        L = np.log1p(np.maximum(Z, 0))
        cols = [np.full(len(Z), e) if isinstance(e, float) else e.predict_proba(L)[:, 1] for e in self.estimators_]
        return FailureProba(np.stack(cols, axis=1), self.horizons_, self.name)
