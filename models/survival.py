"""Survival models on static features (age, model, slot position) for fleets with little telemetry.

Time scale: the GPU's age in seconds (time since it entered service). ``fit(X, duration, event)``
takes one row per GPU: covariates, age at failure or censoring, 1 if it failed. Predictions are
*conditional*: P(fails within ``horizon`` | alive at ``age``), so a model fitted on failures before a
date can score the GPUs still running after it.

- :class:`AgeOnlySurvival` (``survival_age``): the Nelson-Aalen cumulative hazard of age alone (the
  simplest baseline: every GPU of a given age has the same risk);
- :class:`CoxSurvival` (``cox``): Cox proportional hazards (statsmodels ``PHReg``, Breslow ties) with
  the Breslow baseline hazard.

Beyond the oldest age seen in training the cumulative hazard is extended with the mean hazard rate
of the last ``tail_s`` seconds of the training curve (stated, not hidden: it is an extrapolation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from gpufleet.models.base import Model


@dataclass(frozen=True)
class SurvivalProba:
    """``proba[i]`` = P(GPU i fails within ``horizon_s`` | alive at ``age_s[i]``); ``risk`` ranks GPUs."""

    proba: np.ndarray
    risk: np.ndarray
    horizon_s: float
    model: str


class SurvivalModel(Model):
    """Base of survival models (kind "survival")."""

    kind: ClassVar[str] = "survival"
    seed: int
    tail_s: float

    def fit(self, X: np.ndarray, duration: np.ndarray, event: np.ndarray, *,
            feature_names: Sequence[str] = ()) -> SurvivalModel:
        raise NotImplementedError

    def _linear(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _set_baseline(self, times: np.ndarray, cumhaz: np.ndarray) -> None:
        order = np.argsort(times)
        t = np.concatenate([[0.0], np.asarray(times, dtype=np.float64)[order]])
        h = np.concatenate([[0.0], np.maximum.accumulate(np.asarray(cumhaz, dtype=np.float64)[order])])
        self.base_t_, self.base_h_ = t, h
        t_max = t[-1]
        lo = max(t_max - self.tail_s, 0.0)
        span = t_max - lo
        self.tail_rate_ = float((h[-1] - self.cumhaz(np.array([lo]))[0]) / span) if span > 0 else 0.0

    def cumhaz(self, age: np.ndarray) -> np.ndarray:
        """Baseline cumulative hazard at the given ages (step function, linear tail beyond training)."""
        age = np.asarray(age, dtype=np.float64)
        idx = np.searchsorted(self.base_t_, age, side="right") - 1
        h = self.base_h_[np.clip(idx, 0, len(self.base_h_) - 1)]
        over = age - self.base_t_[-1]
        return np.where(over > 0, self.base_h_[-1] + over * getattr(self, "tail_rate_", 0.0), h)

    def predict_proba(self, X: np.ndarray, age_s: np.ndarray, horizon_s: float) -> SurvivalProba:
        """P(failure within ``horizon_s`` after ``age_s``, given survival to ``age_s``)."""
        self.check_fitted()
        age_s = np.asarray(age_s, dtype=np.float64)
        lin = self._linear(X)
        dh = self.cumhaz(age_s + horizon_s) - self.cumhaz(age_s)
        p = 1.0 - np.exp(-dh * np.exp(lin))
        return SurvivalProba(np.clip(p, 0.0, 1.0), p.copy(), float(horizon_s), self.name)


class AgeOnlySurvival(SurvivalModel):
    """Nelson-Aalen hazard of age alone: the baseline every covariate model must beat."""

    name = "survival_age"

    def __init__(self, tail_s: float = 365 * 86400.0, seed: int = 0) -> None:
        self.tail_s = tail_s
        self.seed = seed

    def fit(self, X: np.ndarray, duration: np.ndarray, event: np.ndarray, *,
            feature_names: Sequence[str] = ()) -> AgeOnlySurvival:
        d = np.asarray(duration, dtype=np.float64)
        e = np.asarray(event).astype(bool)
        if len(d) == 0:
            raise ValueError("no training rows")
        times = np.unique(d[e])
        at_risk = len(d) - np.searchsorted(np.sort(d), times, side="left")
        deaths = np.bincount(np.searchsorted(times, d[e]), minlength=len(times))
        self.feature_names_ = tuple(feature_names)
        self._set_baseline(times, np.cumsum(deaths / np.maximum(at_risk, 1)))
        return self

    def _linear(self, X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X))


class CoxSurvival(SurvivalModel):
    """Cox proportional hazards on static covariates (statsmodels PHReg, Breslow ties)."""

    name = "cox"

    def __init__(self, l2: float = 0.0, tail_s: float = 365 * 86400.0, seed: int = 0) -> None:
        self.l2 = l2
        self.tail_s = tail_s
        self.seed = seed

    def fit(self, X: np.ndarray, duration: np.ndarray, event: np.ndarray, *,
            feature_names: Sequence[str] = ()) -> CoxSurvival:
        from statsmodels.duration.hazard_regression import PHReg

        X = np.asarray(X, dtype=np.float64)
        d = np.asarray(duration, dtype=np.float64)
        e = np.asarray(event).astype(np.int64)
        # standardise so the (optional) penalty treats covariates alike; constant columns are dropped
        self.center_ = X.mean(axis=0)
        sd = X.std(axis=0)
        self.keep_ = sd > 0
        self.scale_ = np.where(sd > 0, sd, 1.0)
        Z = ((X - self.center_) / self.scale_)[:, self.keep_]
        model = PHReg(d, Z, status=e, ties="breslow")
        res: Any = model.fit_regularized(alpha=self.l2, L1_wt=0.0) if self.l2 > 0 else model.fit()
        self.coef_ = np.asarray(res.params, dtype=np.float64)
        self.feature_names_ = tuple(feature_names)
        # Breslow baseline at the mean covariates (Z = 0 after centring)
        lin = Z @ self.coef_
        order = np.argsort(d)
        d_s, e_s, r_s = d[order], e[order], np.exp(lin[order])
        risk_sum = np.cumsum(r_s[::-1])[::-1]  # sum over j with d_j >= d_i
        times = np.unique(d_s[e_s == 1])
        first = np.searchsorted(d_s, times, side="left")
        deaths = np.bincount(np.searchsorted(times, d_s[e_s == 1]), minlength=len(times))
        self._set_baseline(times, np.cumsum(deaths / risk_sum[first]))
        return self

    def _linear(self, X: np.ndarray) -> np.ndarray:
        Z = ((np.asarray(X, dtype=np.float64) - self.center_) / self.scale_)[:, self.keep_]
        return np.asarray(Z @ self.coef_, dtype=np.float64)

    def hazard_ratios(self) -> dict[str, float]:
        """exp(coef) per kept covariate, per one standard deviation of that covariate."""
        names = [n for n, k in zip(self.feature_names_ or [f"x{i}" for i in range(len(self.keep_))],
                                   self.keep_, strict=False) if k]
        return {n: float(np.exp(c)) for n, c in zip(names, self.coef_, strict=False)}
