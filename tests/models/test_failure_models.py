"""Behaviour of individual failure models beyond the contract."""

from __future__ import annotations

import numpy as np
from gpufleet.models.baselines import BoostedTreesFailure, OperatorRules, window_summary
from gpufleet.models.failure_base import Calibrator, horizon_label
from gpufleet.models.survival import AgeOnlySurvival, CoxSurvival

from tests.models.test_failure_contract import FEATURES, HORIZONS, windows


def test_horizon_labels() -> None:
    assert [horizon_label(h) for h in (3600, 86400, 7 * 86400, 30 * 86400)] == ["1h", "24h", "7d", "30d"]


def test_rules_fire_on_uncorrectable_ecc() -> None:
    X, mask, y = windows()
    X[:, :, 3] = 0
    X[y[:, 1] == 1, -1, 3] = 1  # an uncorrectable error in every failing window
    m = OperatorRules().fit(X, mask, y, feature_names=FEATURES, horizons=HORIZONS)
    hits = m.rule_hits(X, mask)
    assert hits["uncorrectable_ecc"].sum() == y[:, 1].sum()
    p = m.predict_proba(X, mask).column("24h")
    assert p[y[:, 1] == 1].min() > p[y[:, 1] == 0].max()


def test_window_summary_marks_missing_fields() -> None:
    X, mask, _ = windows(n=5)
    Z = window_summary(X, mask).reshape(5, len(FEATURES), -1)
    assert np.all(Z[:, 4, :] == 0)  # masked field: every statistic 0, observed share 0
    assert np.all(Z[:, 0, -1] == 1.0)


def test_gbt_learns_the_precursor() -> None:
    from gpufleet.analytics.failure_metrics import pr_auc

    X, mask, y = windows(n=600)
    m = BoostedTreesFailure(max_iter=20).fit(X[:400], mask[:400], y[:400], feature_names=FEATURES, horizons=HORIZONS)
    assert (pr_auc(y[400:, 1], m.predict_proba(X[400:], mask[400:]).column("24h")) or 0) > 0.9


def test_calibrator_is_monotone_and_bounded() -> None:
    rng = np.random.default_rng(0)
    s = rng.random(2000)
    y = (rng.random(2000) < s).astype(int)
    c = Calibrator().fit(s, y)
    out = c.transform(np.linspace(0, 1, 50))
    assert c.method == "isotonic" and np.all(np.diff(out) >= -1e-12) and out.min() >= 0 and out.max() <= 1


def test_cox_finds_the_risky_covariate() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(800, 2))
    dur = rng.exponential(365 * 86400 * np.exp(-1.0 * X[:, 0]))
    ev = np.ones(800, dtype=bool)
    cox = CoxSurvival().fit(X, dur, ev, feature_names=("risky", "noise"))
    hr = cox.hazard_ratios()
    assert hr["risky"] > 1.5 and 0.8 < hr["noise"] < 1.25
    age = AgeOnlySurvival().fit(X, dur, ev)
    p = age.predict_proba(X[:3], np.zeros(3), 365 * 86400.0).proba
    assert np.allclose(p, p[0]) and 0.4 < p[0] < 0.8  # age alone: same risk for all, ~1 - e^-1


def test_transfer_features_ignore_gpu_model_fingerprints() -> None:
    from gpufleet.models.baselines import RELATIVE_FIELDS, transfer_summary
    from gpufleet.models.lstm_failure import LSTMFailure

    X, mask, y = windows(n=300)
    rel = np.array([f in RELATIVE_FIELDS for f in FEATURES])
    shifted = X.copy()
    shifted[:, :, rel] += 25.0  # another GPU model: every level-like gauge runs 25 units higher
    np.testing.assert_allclose(transfer_summary(X, mask, rel), transfer_summary(shifted, mask, rel), atol=1e-3)
    m = LSTMFailure(hidden=4, epochs=1, features="transfer").fit(X, mask, y, feature_names=FEATURES, horizons=HORIZONS)
    np.testing.assert_allclose(m.raw_scores(X, mask), m.raw_scores(shifted, mask), atol=1e-4)
