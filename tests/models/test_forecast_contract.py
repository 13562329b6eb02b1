"""One contract test over every registered forecaster, plus behaviour checks of the simple ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gpufleet.models.base import NotFittedError
from gpufleet.models.forecast_base import (
    DEFAULT_QUANTILES,
    Forecast,
    Forecaster,
    fill_missing,
    forecasters,
    steps_per,
)

TINY: dict[str, dict[str, Any]] = {"lstm": {"epochs": 2, "hidden": 4, "max_windows": 32}}


def _series(days: int = 16, noise: float = 3.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(days * 24)
    return 50 + 20 * np.sin(2 * np.pi * t / 24) + rng.normal(0, noise, len(t))


def _make(name: str) -> Forecaster:
    cls = forecasters()[name]
    m = cls(**TINY.get(name, {}))  # type: ignore[call-arg]
    assert isinstance(m, Forecaster)
    return m


@pytest.mark.parametrize("name", sorted(forecasters()))
def test_contract(name: str) -> None:
    m = _make(name)
    assert m.kind == "forecast" and m.name == name
    with pytest.raises(NotFittedError):
        m.predict(5)
    y = _series()
    y[30:34] = np.nan  # an outage: must be tolerated
    assert m.fit(y, freq="1h") is m
    fc = m.predict(30, quantiles=(0.2,))
    assert isinstance(fc, Forecast) and fc.horizon == 30
    for q in (*DEFAULT_QUANTILES, 0.2):
        assert q in fc.quantiles and fc.quantiles[q].shape == (30,)
    stack = np.vstack([fc.quantiles[q] for q in fc.levels()])
    assert np.all(np.diff(stack, axis=0) >= -1e-9), "quantiles cross"
    assert np.all(np.isfinite(stack)) and np.all(stack >= 0)
    np.testing.assert_allclose(fc.point, fc.quantiles[0.5])
    # a sensible level: the median stays within the range of the data
    assert 0 <= fc.point.mean() <= 120
    paths = fc.sample_paths(50, seed=1)
    assert paths.shape == (50, 30)
    np.testing.assert_array_equal(paths, fc.sample_paths(50, seed=1))
    assert not np.array_equal(paths, fc.sample_paths(50, seed=2))
    # the paths' spread follows the quantiles
    lo, hi = np.percentile(paths, 5, axis=0), np.percentile(paths, 95, axis=0)
    assert np.mean(hi - lo) > 0
    assert set(m.get_params()) >= {"seed"}


def test_seasonal_naive_repeats_the_last_day() -> None:
    y = _series(days=3)
    fc = forecasters()["seasonal_naive_daily"]().fit(y, freq="1h").predict(48)  # type: ignore[attr-defined]
    np.testing.assert_allclose(fc.point, np.maximum(np.tile(y[-24:], 2), 0))


def test_smoothers_beat_seasonal_naive_on_noisy_seasonal_data() -> None:
    y = _series(days=22, noise=8.0, seed=3)
    train, test = y[:-24], y[-24:]
    err = {}
    for name in ("seasonal_naive_daily", "seasonal_mean", "ets", "theta", "ensemble"):
        fc = _make(name).fit(train, freq="1h").predict(24)
        err[name] = float(np.mean(np.abs(fc.point - test)))
    for name in ("seasonal_mean", "ets", "ensemble"):
        assert err[name] < err["seasonal_naive_daily"], err


def test_fill_missing_uses_the_same_slot() -> None:
    y = np.tile(np.arange(24, dtype=float), 3)
    y[30] = np.nan
    assert fill_missing(y, 24)[30] == 6.0


def test_steps_per() -> None:
    assert steps_per("1d", "10min") == 144 and steps_per("7d", "1h") == 168
    with pytest.raises(ValueError):
        steps_per("1d", "7min")
    with pytest.raises(ValueError):
        steps_per("soon", "1h")


def test_fit_respects_as_of() -> None:
    import pandas as pd

    y = _series(days=4)
    ts = pd.date_range("2020-05-01", periods=len(y), freq="1h")
    m = forecasters()["seasonal_naive_daily"]().fit(y, freq="1h", timestamps=ts, as_of=ts[47])  # type: ignore[attr-defined]
    fc = m.predict(24)
    np.testing.assert_allclose(fc.point, np.maximum(y[24:48], 0))
    assert fc.start == ts[48]


def test_combo_weights_follow_internal_validation_errors() -> None:
    """combo weights its members by inverse MAE on origins inside the training data: on a series whose daily
    profile is fixed plus noise, the slot-mean smoother beats tomorrow-is-today and gets the larger weight."""
    y = _series(days=22, noise=8.0, seed=5)
    m = _make("combo").fit(y[:-24], freq="1h")
    w = dict(zip(m.members, m.weights_, strict=True))  # type: ignore[attr-defined]
    assert sum(w.values()) == pytest.approx(1.0) and min(w.values()) > 0
    assert w["seasonal_mean"] > w["seasonal_naive_daily"]
    fc = m.predict(24)
    naive = _make("seasonal_naive_daily").fit(y[:-24], freq="1h").predict(24)
    assert np.mean(np.abs(fc.point - y[-24:])) < np.mean(np.abs(naive.point - y[-24:]))
    # its own intervals come from its internal errors: the 80 % band holds most of the next day
    inside = (y[-24:] >= fc.quantile(0.1)) & (y[-24:] <= fc.quantile(0.9))
    assert inside.mean() >= 0.5


def test_the_explicit_registries_list_every_named_model_class_once() -> None:
    """Nothing registers itself at import: `forecasters()` and `failure_models()` are written-out lists,
    so a new model class must be added there; this finds any named model class left out."""
    import importlib
    import inspect
    import pkgutil

    import gpufleet.models as pkg
    from gpufleet.models import all_models, failure_models
    from gpufleet.models.base import Model

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"gpufleet.models.{info.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Model) and cls.__module__ == mod.__name__ and cls.__dict__.get("name"):
                found[cls.name] = cls
    listed = all_models()
    assert listed == found
    assert set(forecasters()) | set(failure_models()) == set(listed)
    assert not set(forecasters()) & set(failure_models())
    assert {c.kind for c in forecasters().values()} == {"forecast"}
