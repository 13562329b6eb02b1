"""One contract test over every registered failure / survival / event-history model.

Forecasters (kind "forecast") have their own contract test; this file covers the other kinds.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from gpufleet.models import failure_models
from gpufleet.models.base import Model, NotFittedError
from gpufleet.models.failure_base import FailureProba

KINDS = ("failure", "survival", "events")
REG = failure_models()
FEATURES = ("temperature_gpu", "power_usage", "ecc_corrected_volatile", "ecc_uncorrected_volatile", "row_remap_pending")
HORIZONS = (3600.0, 86400.0)


def small(cls: type[Model], seed: int) -> Model:
    kw: dict[str, object] = {"seed": seed}
    if cls.name == "lstm_failure":
        kw.update(epochs=2, hidden=4, pool=4)
    if cls.name == "gbt":
        kw.update(max_iter=10)
    return cls(**kw)  # type: ignore[call-arg]


def windows(seed: int = 0, n: int = 240, steps: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, steps, len(FEATURES))).astype(np.float32)
    X[:, :, 0] += 60
    y = np.zeros((n, 2), dtype=np.int64)
    y[:, 1] = rng.random(n) < 0.2
    y[:, 0] = y[:, 1] & (rng.random(n) < 0.5)
    X[y[:, 1] == 1, -6:, 2] += 5  # a precursor in the last steps
    mask = np.ones_like(X, dtype=np.uint8)
    mask[:, :, 4] = 0  # an unsupported field: masked, and its values are 0
    X[:, :, 4] = 0
    return X, mask, y


def fit_predict(model: Model, seed: int = 0) -> np.ndarray:
    if model.kind == "failure":
        X, mask, y = windows(seed)
        model.fit(X, mask, y, feature_names=FEATURES, horizons=HORIZONS)  # type: ignore[attr-defined]
        out = model.predict_proba(X[:50], mask[:50])  # type: ignore[attr-defined]
        assert isinstance(out, FailureProba)
        return np.asarray(out.proba)
    if model.kind == "survival":
        rng = np.random.default_rng(seed)
        Xs = rng.normal(size=(300, 3))
        dur = rng.exponential(86400 * 365 * np.exp(-0.5 * Xs[:, 0]))
        ev = rng.random(300) < 0.7
        model.fit(Xs, dur, ev, feature_names=("a", "b", "c"))  # type: ignore[attr-defined]
        res = model.predict_proba(Xs[:50], np.full(50, 86400 * 100.0), 30 * 86400.0)  # type: ignore[attr-defined]
        return np.asarray(res.proba)[:, None]
    from gpufleet.models.event_history import EXPOSURE_FEATURE, RATE_FEATURE

    rng = np.random.default_rng(seed)
    Z = np.column_stack([rng.poisson(1, 300), np.full(300, 100.0), rng.poisson(0.2, 300)]).astype(float)
    y = (rng.random((300, 2)) < 0.1).astype(np.int64)
    model.fit(Z, y, feature_names=(RATE_FEATURE, EXPOSURE_FEATURE, "gpu_faults_7d"), horizons=(86400.0, 7 * 86400.0))  # type: ignore[attr-defined]
    return np.asarray(model.predict_proba(Z[:50]).proba)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(REG))
def test_contract(name: str) -> None:
    cls = REG[name]
    model = small(cls, seed=3)
    # hyperparameters only in __init__: nothing fitted yet, params readable, predict refuses
    assert model.name == name and not model.is_fitted() and model.get_params()["seed"] == 3
    with pytest.raises((NotFittedError, AttributeError)):
        if model.kind == "failure":
            model.predict_proba(*windows()[:2])  # type: ignore[attr-defined]
        elif model.kind == "survival":
            model.predict_proba(np.zeros((1, 3)), np.zeros(1), 1.0)  # type: ignore[attr-defined]
        else:
            model.predict_proba(np.zeros((1, 3)))  # type: ignore[attr-defined]
    p1 = fit_predict(model)
    assert model.is_fitted()
    assert np.all((p1 >= 0) & (p1 <= 1)) and np.isfinite(p1).all()
    # same seed, same data -> same output (deterministic on CPU)
    p2 = fit_predict(small(cls, seed=3))
    np.testing.assert_allclose(p1, p2, rtol=0, atol=1e-9)
    # a fitted model survives the registry's pickling
    again = pickle.loads(pickle.dumps(model))
    if model.kind == "failure":
        X, mask, _ = windows()
        np.testing.assert_allclose(again.predict_proba(X[:50], mask[:50]).proba, p1, atol=1e-9)


def test_registry_names_are_unique_per_kind() -> None:
    assert {"rules", "logistic", "gbt", "lstm_failure", "cox", "survival_age", "events_rate", "events_logistic"} <= set(REG)


def test_masked_values_are_ignored() -> None:
    """Values under mask 0 do not change predictions: a masked field is absent, not a reading."""
    X, mask, y = windows()
    for name in ("logistic", "lstm_failure"):
        model = small(REG[name], seed=0)
        model.fit(X, mask, y, feature_names=FEATURES, horizons=HORIZONS)  # type: ignore[attr-defined]
        X2 = X.copy()
        X2[:, :, 4] = 1234.0  # garbage under the mask
        a = model.predict_proba(X[:40], mask[:40]).proba  # type: ignore[attr-defined]
        b = model.predict_proba(X2[:40], mask[:40]).proba  # type: ignore[attr-defined]
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_window_and_input_step_are_hyperparameters_of_every_failure_model() -> None:
    for name, cls in REG.items():
        if cls.kind != "failure":
            continue
        m = cls(window_s=72 * 3600.0, input_step_s=1800.0, seed=1)  # type: ignore[call-arg]
        params = m.get_params()
        assert params["window_s"] == 72 * 3600.0 and params["input_step_s"] == 1800.0, name
        assert cls(seed=1).get_params()["window_s"] == 6 * 3600.0  # type: ignore[call-arg]
