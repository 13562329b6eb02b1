"""Baselines every failure predictor is compared with.

- :class:`OperatorRules`: the rules an operator writes by hand (any uncorrectable ECC error,
  a correctable-error rate, a pending / failed row remap or page retirement, a hot GPU);
- :class:`LogisticFailure` and :class:`BoostedTreesFailure`: scikit-learn classifiers on window
  summary features (:func:`window_summary`).

Counter fields arrive as per-step increments (``analytics.datasets`` differences them), so "any
uncorrectable ECC in the window" is ``sum > 0`` of that column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gpufleet.models.failure_base import (
    Calibrator,
    FailureModel,
    FailureProba,
    calibration_split,
    iter_chunks,
)

SUMMARY_STATS = ("mean", "std", "min", "max", "last", "trend", "sum", "observed")


def window_summary(X: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-window summary features ``(n, n_features * len(SUMMARY_STATS))``, masked values ignored.

    A field never observed in a window gets 0 for every statistic and ``observed = 0``; the model
    sees the missingness explicitly instead of a fake reading.
    """
    n, steps, f = X.shape
    m = mask.astype(bool)
    Xf = np.where(m, X, np.float32(0.0)).astype(np.float32, copy=False)
    cnt = m.sum(axis=1, dtype=np.float32)
    safe = np.maximum(cnt, 1)
    total = Xf.sum(axis=1, dtype=np.float64).astype(np.float32)
    mean = total / safe
    var = np.maximum(np.einsum("ntf,ntf->nf", Xf, Xf, dtype=np.float64).astype(np.float32) / safe - mean ** 2, 0)
    seen = cnt > 0
    mx = np.where(seen, np.where(m, Xf, np.float32(-np.inf)).max(axis=1), 0.0)
    mn = np.where(seen, np.where(m, Xf, np.float32(np.inf)).min(axis=1), 0.0)
    # last observed value: index of the last True along the time axis
    last_idx = steps - 1 - np.argmax(m[:, ::-1, :], axis=1)
    last = np.where(seen, np.take_along_axis(Xf, last_idx[:, None, :], axis=1)[:, 0, :], 0.0)
    q = max(steps // 4, 1)
    head_c = cnt_head = m[:, :q, :].sum(axis=1)
    tail_c = m[:, -q:, :].sum(axis=1)
    head = Xf[:, :q, :].sum(axis=1) / np.maximum(cnt_head, 1)
    tail = Xf[:, -q:, :].sum(axis=1) / np.maximum(tail_c, 1)
    trend = np.where((head_c > 0) & (tail_c > 0), tail - head, 0.0)
    observed = cnt / steps
    out = np.stack([mean, np.sqrt(var), mn, mx, last, trend, total, observed], axis=2)
    return out.reshape(n, f * len(SUMMARY_STATS)).astype(np.float32)


TRANSFER_STATS = ("std", "trend", "peak", "last", "sum", "tail_sum")
RELATIVE_FIELDS = ("temperature_gpu", "temperature_memory", "power_usage", "util_gpu", "clock_sm", "pcie_link_width")


def transfer_summary(X: np.ndarray, mask: np.ndarray, relative: np.ndarray) -> np.ndarray:
    """Summaries that carry over to another fleet ``(n, n_features * 6 + 1)``.

    Level-like gauges (``relative``) are read as deviations from the window's own mean; error counts
    and states keep their values (asinh of sums for the spiky ones) but absent fields read 0 like
    "no errors". Per field: std, trend (last quarter minus first), peak (max minus mean), last (minus
    mean for gauges), asinh(sum) and asinh(sum of the last quarter); plus one observed fraction over
    all fields (which fields a GPU reports tells its model, not its health).
    """
    n, steps, f = X.shape
    m = mask.astype(bool)
    Xf = np.where(m, X, np.float32(0.0)).astype(np.float32, copy=False)
    cnt = m.sum(axis=1, dtype=np.float32)
    seen = cnt > 0
    mean = Xf.sum(axis=1, dtype=np.float64).astype(np.float32) / np.maximum(cnt, 1)
    var = np.maximum(np.einsum("ntf,ntf->nf", Xf, Xf, dtype=np.float64).astype(np.float32) / np.maximum(cnt, 1)
                     - mean ** 2, 0)
    mx = np.where(seen, np.where(m, Xf, np.float32(-np.inf)).max(axis=1), 0.0)
    last_idx = steps - 1 - np.argmax(m[:, ::-1, :], axis=1)
    last = np.where(seen, np.take_along_axis(Xf, last_idx[:, None, :], axis=1)[:, 0, :], 0.0)
    q = max(steps // 4, 1)
    head_c, tail_c = m[:, :q, :].sum(axis=1), m[:, -q:, :].sum(axis=1)
    head = Xf[:, :q, :].sum(axis=1) / np.maximum(head_c, 1)
    tail_sum = Xf[:, -q:, :].sum(axis=1)
    tail = tail_sum / np.maximum(tail_c, 1)
    trend = np.where((head_c > 0) & (tail_c > 0), tail - head, 0.0)
    peak = np.where(relative, mx - mean, mx)
    last = np.where(relative, np.where(seen, last - mean, 0.0), last)
    total = np.where(relative, 0.0, np.arcsinh(Xf.sum(axis=1)))
    tail_sum = np.where(relative, 0.0, np.arcsinh(tail_sum))
    out = np.stack([np.sqrt(var), trend, peak, last, total, tail_sum], axis=2).reshape(n, f * len(TRANSFER_STATS))
    observed = m.any(axis=2).mean(axis=1, keepdims=True)
    return np.concatenate([out, observed], axis=1).astype(np.float32)


def summaries(X: Any, mask: Any, chunk: int = 4096, relative: np.ndarray | None = None) -> np.ndarray:
    """:func:`window_summary` (or, given ``relative``, :func:`transfer_summary`) over arrays or lazy views."""
    if relative is not None:
        parts = [transfer_summary(xb, mb, relative) for xb, mb in iter_chunks(X, mask, chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, X.shape[2] * len(TRANSFER_STATS) + 1), np.float32)
    parts = [window_summary(xb, mb) for xb, mb in iter_chunks(X, mask, chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, X.shape[2] * len(SUMMARY_STATS)), np.float32)


def summary_names(feature_names: Sequence[str]) -> list[str]:
    return [f"{f}:{s}" for f in feature_names for s in SUMMARY_STATS]


def _sum_of(X: np.ndarray, mask: np.ndarray, idx: list[int]) -> np.ndarray:
    if not idx:
        return np.zeros(X.shape[0])
    return np.where(mask[:, :, idx] > 0, X[:, :, idx], 0.0).sum(axis=(1, 2))


def _max_of(X: np.ndarray, mask: np.ndarray, idx: list[int]) -> np.ndarray:
    if not idx:
        return np.full(X.shape[0], -np.inf)
    return np.where(mask[:, :, idx] > 0, X[:, :, idx], -np.inf).max(axis=(1, 2))


class OperatorRules(FailureModel):
    """Hand-written alarm rules; their score is calibrated into a probability on training data.

    Rules (score bits, strongest first): any uncorrectable ECC error / XID 48-79 style fatal in the
    window (8); a failed or pending row remap or pending page retirement (4); more than
    ``corrected_per_window`` correctable ECC errors (2); temperature above ``temp_c`` (1).
    """

    name = "rules"
    UNCORRECTED = ("ecc_uncorrected_volatile", "ecc_uncorrected_aggregate", "retired_pages_dbe",
                   "remapped_rows_uncorrectable")
    REMAP = ("row_remap_failure", "row_remap_pending", "retired_pages_pending")
    CORRECTED = ("ecc_corrected_volatile", "ecc_corrected_aggregate")
    TEMP = ("temperature_gpu", "temperature_memory")

    def __init__(self, corrected_per_window: float = 10.0, temp_c: float = 85.0, window_s: float = 6 * 3600.0,
                 input_step_s: float | None = None, seed: int = 0) -> None:
        self.corrected_per_window = corrected_per_window
        self.window_s = window_s
        self.input_step_s = input_step_s
        self.temp_c = temp_c
        self.seed = seed

    def rule_hits(self, X: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """Which rule fires on which window (boolean arrays by rule name)."""
        idx = {k: [i for i, f in enumerate(self.feature_names_) if f in names]
               for k, names in (("uncorrectable_ecc", self.UNCORRECTED), ("row_remap", self.REMAP),
                                ("corrected_rate", self.CORRECTED), ("temperature", self.TEMP))}
        return {
            "uncorrectable_ecc": _sum_of(X, mask, idx["uncorrectable_ecc"]) > 0,
            "row_remap": _max_of(X, mask, idx["row_remap"]) > 0,
            "corrected_rate": _sum_of(X, mask, idx["corrected_rate"]) > self.corrected_per_window,
            "temperature": _max_of(X, mask, idx["temperature"]) > self.temp_c,
        }

    def _score(self, X: Any, mask: Any) -> np.ndarray:
        weights = {"uncorrectable_ecc": 8, "row_remap": 4, "corrected_rate": 2, "temperature": 1}
        parts = []
        for xb, mb in iter_chunks(X, mask):
            hits = self.rule_hits(xb, mb)
            parts.append(sum((hits[k].astype(np.float64) * w for k, w in weights.items()), np.zeros(len(xb))))
        return np.concatenate(parts) if parts else np.zeros(0)

    def fit(self, X: Any, mask: Any, y: np.ndarray, *, feature_names: Sequence[str],
            horizons: Sequence[float]) -> OperatorRules:
        self._remember(X, mask, y, feature_names, horizons)
        s = self._score(X, mask)
        # the empirical failure rate per distinct score (Laplace-smoothed): a lookup table
        self.table_ = []
        for j in range(y.shape[1]):
            prior = (y[:, j].sum() + 0.5) / (len(y) + 1.0)
            tab = {}
            for v in np.unique(s):
                sel = s == v
                tab[float(v)] = float((y[sel, j].sum() + prior) / (sel.sum() + 1.0))
            self.table_.append((tab, float(prior)))
        return self

    def predict_proba(self, X: Any, mask: Any) -> FailureProba:
        self.check_fitted()
        s = self._score(X, mask)
        cols = []
        for tab, prior in self.table_:
            # unseen scores: fall back to the highest-seen score below them, else the prior
            keys = sorted(tab)
            col = np.zeros(len(s))
            for v in np.unique(s):
                col[s == v] = tab.get(float(v), next((tab[k] for k in reversed(keys) if k <= v), prior))
            cols.append(col + 1e-9 * s)  # keep the rule order inside equal probabilities
        return self._result(np.stack(cols, axis=1) if cols else np.zeros((len(s), 0)))


def _one_thread() -> Any:
    """OpenMP/BLAS on one thread: small fits spin-wait badly on shared 2-core machines otherwise."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


class _SummaryClassifier(FailureModel):
    """Shared fit/predict for scikit-learn classifiers on :func:`window_summary` features."""

    calibration_fraction: float
    features: str = "absolute"

    def _make(self) -> Any:
        raise NotImplementedError

    def _relative(self) -> np.ndarray | None:
        if getattr(self, "features", "absolute") != "transfer":
            return None
        return np.array([f in RELATIVE_FIELDS for f in self.feature_names_], dtype=bool)

    def fit(self, X: Any, mask: Any, y: np.ndarray, *, feature_names: Sequence[str],
            horizons: Sequence[float]) -> _SummaryClassifier:
        self._remember(X, mask, y, feature_names, horizons)
        with _one_thread():
            return self._fit(summaries(X, mask, relative=self._relative()), y)

    def _fit(self, Z: np.ndarray, y: np.ndarray) -> _SummaryClassifier:
        fit_idx, cal_idx = calibration_split(len(Z), self.calibration_fraction)
        self.estimators_: list[Any] = []
        self.calibrators_: list[Calibrator] = []
        for j in range(y.shape[1]):
            yj = y[:, j]
            if len(fit_idx) == 0 or yj[fit_idx].min() == yj[fit_idx].max():  # one class: a constant model
                est: Any = float(yj[fit_idx].mean()) if len(fit_idx) else 0.0
                raw_cal = np.full(len(cal_idx), est)
            else:
                est = self._make().fit(Z[fit_idx], yj[fit_idx])
                raw_cal = est.predict_proba(Z[cal_idx])[:, 1] if len(cal_idx) else np.zeros(0)
            self.estimators_.append(est)
            self.calibrators_.append(Calibrator().fit(raw_cal, yj[cal_idx]))
        return self

    def raw_scores(self, X: Any, mask: Any) -> np.ndarray:
        self.check_fitted()
        Z = summaries(X, mask, relative=self._relative())
        with _one_thread():
            cols = [np.full(len(Z), est) if isinstance(est, float) else est.predict_proba(Z)[:, 1]
                    for est in self.estimators_]
        return np.stack(cols, axis=1)

    def predict_proba(self, X: Any, mask: Any) -> FailureProba:
        raw = self.raw_scores(X, mask)
        out = np.stack([c.transform(raw[:, j]) for j, c in enumerate(self.calibrators_)], axis=1)
        return self._result(out)


class LogisticFailure(_SummaryClassifier):
    """L2 logistic regression on standardised window summaries, balanced class weights."""

    name = "logistic"

    def __init__(self, C: float = 0.1, calibration_fraction: float = 0.2, features: str = "absolute",
                 window_s: float = 6 * 3600.0, input_step_s: float | None = None, seed: int = 0) -> None:
        self.C = C
        self.window_s = window_s
        self.input_step_s = input_step_s
        self.features = features
        self.calibration_fraction = calibration_fraction
        self.seed = seed

    def _make(self) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, class_weight="balanced",
                                                                  max_iter=2000, random_state=self.seed))


class BoostedTreesFailure(_SummaryClassifier):
    """Histogram gradient-boosted trees on window summaries, balanced class weights."""

    name = "gbt"

    def __init__(self, max_iter: int = 100, learning_rate: float = 0.1, max_leaf_nodes: int = 15,
                 calibration_fraction: float = 0.2, features: str = "absolute", window_s: float = 6 * 3600.0,
                 input_step_s: float | None = None, seed: int = 0) -> None:
        self.max_iter = max_iter
        self.window_s = window_s
        self.input_step_s = input_step_s
        self.features = features
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.calibration_fraction = calibration_fraction
        self.seed = seed

    def _make(self) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=self.max_iter, learning_rate=self.learning_rate,
                                              max_leaf_nodes=self.max_leaf_nodes, class_weight="balanced",
                                              random_state=self.seed)
