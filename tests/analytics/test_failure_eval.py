"""Evaluation metrics, a shuffled-label model, registry and online scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from gpufleet.analytics.failure_metrics import (
    concordance_index,
    pr_auc,
    recall_at_false_alarm_rate,
    recall_at_precision,
    roc_auc,
)
from gpufleet.analytics.registry import Registry, drift
from gpufleet.analytics.scoring import explain_top, score_panel
from gpufleet.models.baselines import LogisticFailure

from tests.analytics.test_failure_datasets import FIELDS, T0, panel
from tests.models.test_failure_contract import FEATURES, HORIZONS, windows


def test_metrics_on_known_cases() -> None:
    y = np.array([0, 0, 1, 1])
    assert pr_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert recall_at_precision(y, np.array([0.1, 0.9, 0.8, 0.7]), 0.5) == 1.0
    y2, p2 = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])
    assert recall_at_false_alarm_rate(y2, p2, gpu_days=1000) == (1.0, 0.7)  # one false alarm allowed
    assert recall_at_false_alarm_rate(y2, p2, gpu_days=500) == (0.5, 0.9)  # none allowed
    assert concordance_index(np.array([1.0, 2, 3]), np.array([1, 1, 1]), np.array([3.0, 2, 1])) == 1.0


def test_shuffled_labels_score_no_better_than_chance() -> None:
    X, mask, y = windows(seed=1, n=800)
    rng = np.random.default_rng(5)
    y_shuf = y[rng.permutation(len(y))]
    m = LogisticFailure().fit(X[:500], mask[:500], y_shuf[:500], feature_names=FEATURES, horizons=HORIZONS)
    p = m.predict_proba(X[500:], mask[500:]).column("24h")
    test_y = y_shuf[500:, 1]
    auc = roc_auc(test_y, p)
    assert auc is not None and abs(auc - 0.5) < 0.1
    assert (pr_auc(test_y, p) or 0) < test_y.mean() + 0.1
    # the same model on the true labels is far better: the test above is not vacuous
    m2 = LogisticFailure().fit(X[:500], mask[:500], y[:500], feature_names=FEATURES, horizons=HORIZONS)
    assert (roc_auc(y[500:, 1], m2.predict_proba(X[500:], mask[500:]).column("24h")) or 0) > 0.9


def test_registry_champion_challenger_and_drift(tmp_path: Path) -> None:
    X, mask, y = windows(seed=2, n=400)
    reg = Registry(tmp_path / "reg")
    assert reg.retraining_due(T0)
    good = LogisticFailure().fit(X[:300], mask[:300], y[:300], feature_names=FEATURES, horizons=HORIZONS)
    shuffled = y[:300][np.random.default_rng(0).permutation(300)]
    bad = LogisticFailure().fit(X[:300], mask[:300], shuffled, feature_names=FEATURES, horizons=HORIZONS)
    v1 = reg.save(bad, as_of=T0, data_span=(T0 - 86400, T0), metrics={},
                  validation_scores=bad.predict_proba(X[300:], mask[300:]).column("24h"))
    d1 = reg.challenge(v1, X[300:], mask[300:], y[300:], as_of=T0)
    assert d1.promoted and reg.champion() == v1
    v2 = reg.save(good, as_of=T0 + 1, data_span=(T0 - 86400, T0), metrics={})
    d2 = reg.challenge(v2, X[300:], mask[300:], y[300:], as_of=T0 + 1)
    assert d2.promoted and reg.champion() == v2
    d3 = reg.challenge(v1, X[300:], mask[300:], y[300:], as_of=T0 + 2)  # the worse one cannot come back
    assert not d3.promoted and reg.champion() == v2
    meta = reg.meta(v1)
    assert meta["features"] == list(FEATURES) and meta["seed"] == 0 and meta["horizons"] == list(HORIZONS)
    assert json.loads((tmp_path / "reg" / "champion.json").read_text())["version"] == v2
    assert not reg.retraining_due(T0 + 86400, every_s=7 * 86400) and reg.retraining_due(T0 + 8 * 86400)
    ref = meta["score_reference"]
    same = drift(ref, bad.predict_proba(X[300:], mask[300:]).column("24h"))
    moved = drift(ref, np.full(100, 0.99))
    assert not same["alert"] and moved["alert"] and moved["psi"] > same["psi"]


def test_online_scoring_and_signals() -> None:
    from gpufleet.analytics.datasets import make_windows, prepare
    from gpufleet.models.baselines import BoostedTreesFailure

    p = prepare(panel(gpus=6, days=3, seed=3))
    p.values[5, -40:, 1] = 50.0  # GPU-5 suddenly throws correctable errors
    ws = make_windows(p, {"GPU-5": np.array([p.times[-1] + 3600.0])}, horizons=HORIZONS)
    y = (ws.X[np.arange(len(ws))][:, :, 1].max(axis=1) > 20).astype(int)[:, None].repeat(2, axis=1)
    m = BoostedTreesFailure(max_iter=10, calibration_fraction=0.0).fit(
        ws.X, ws.mask, y, feature_names=FIELDS, horizons=HORIZONS)
    scores = score_panel(m, p)
    assert len(scores.uuids) == 6 and scores.risk.shape == (6, 2)
    assert scores.top(1, "24h")[0][0] == "GPU-5"
    explain_top(m, p, scores, n=2)
    assert scores.signals["GPU-5"][0][0] == "ecc_corrected_volatile"
    smp = scores.samples()
    assert len(smp) == 12 and smp[0].field == "failure_risk" and smp[0].labels[0][0] == "horizon"


def test_registry_refuses_a_model_whose_validation_window_holds_no_failure(tmp_path: Path) -> None:
    X, mask, y = windows(seed=2, n=400)
    reg = Registry(tmp_path / "reg")
    m = LogisticFailure().fit(X[:300], mask[:300], y[:300], feature_names=FEATURES, horizons=HORIZONS)
    quiet = np.zeros_like(y[300:])  # a validation slice in which no GPU failed
    v1 = reg.save(m, as_of=T0, data_span=(T0 - 86400, T0), metrics={})
    first = reg.challenge(v1, X[300:], mask[300:], quiet, as_of=T0)
    assert not first.promoted and reg.champion() is None  # not even as the first champion
    assert "holds no failure within 24h" in first.reason and "no champion yet" in first.reason
    assert reg.challenge(v1, X[300:], mask[300:], y[300:], as_of=T0).promoted and reg.champion() == v1
    v2 = reg.save(m, as_of=T0 + 1, data_span=(T0 - 86400, T0 + 1), metrics={})
    d = reg.challenge(v2, X[300:], mask[300:], quiet, as_of=T0 + 1)
    assert not d.promoted and d.champion == v1 and reg.champion() == v1
    assert d.reason.count("\n") == 0 and f"keeping champion {v1}" in d.reason


def test_risk_scores_carry_their_horizon() -> None:
    from gpufleet.analytics.scoring import RiskScores
    from gpufleet.models.failure_base import Risk

    s = RiskScores(["a", "b"], (3600.0, 86400.0), np.array([[0.01, 0.2], [0.0, 0.0]]), T0, "m")
    day = s.at("24h")
    assert day["a"] == Risk(0.2, 86400.0) and day["b"].p == 0.0
    week = s.at("7d")["a"]  # the model has no 7 d column: converted from its nearest (24 h)
    assert week.horizon_s == 7 * 86400.0 and abs(week.p - (1 - 0.8 ** 7)) < 1e-12
