"""Strict-lead backtests: origins and lead, no look-ahead, zero handling, conformal coverage, CLI, Helios."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gpufleet.analytics.forecast import demand_from_csv, load_csv, mask_outages
from gpufleet.analytics.forecast_strict import conformal, evaluate_strict, windows
from gpufleet.models.forecast_base import forecasters
from typer.testing import CliRunner

TINY_GBM = {"max_iter": 20, "max_leaf_nodes": 7, "min_samples_leaf": 10}


def _frame(n: int = 600, seed: int = 0, noise: float = 2.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n, freq="1h")
    t = np.arange(n)
    cols = {}
    for name, base in (("a", 40.0), ("b", 15.0)):
        cols[name] = np.maximum(base + 8 * np.sin(2 * np.pi * t / 24) + rng.normal(0, noise, n), 0.0)
    return pd.DataFrame(cols, index=idx)


def test_windows_cover_the_last_steps_and_leave_room_for_the_lead() -> None:
    w = windows(100, 3, n_test=10, n_val=20, n_warm=5)
    assert list(w["test"]) == list(range(90, 100))
    assert list(w["val"]) == list(range(70, 90)) and list(w["warm"]) == list(range(65, 70))
    with pytest.raises(ValueError, match="too short"):
        windows(30, 3, n_test=10, n_val=10, n_warm=10)


def test_every_target_is_forecast_exactly_lead_steps_ahead() -> None:
    """On a strictly increasing series the last value known at the origin is the target minus ``lead``: the
    naive forecast of target t is y[t - lead] and nothing later (the origin is t - lead + 1)."""
    n, lead = 400, 4
    idx = pd.date_range("2024-01-01", periods=n, freq="1h")
    frame = pd.DataFrame({"s": np.arange(n, dtype=float)}, index=idx)
    summary, res = evaluate_strict(frame, "1h", lead, 24, ("naive_last", "seasonal_naive_daily"), n_test=48,
                                   n_val=48, n_warm=24, n_cal=48)
    naive = next(r for r in res if r.model == "naive_last")
    np.testing.assert_array_equal(naive.actual, naive.targets.astype(float))
    np.testing.assert_array_equal(naive.point, naive.actual - lead)
    assert summary["series"]["s"]["naive_last"]["mae"] == pytest.approx(lead)
    sn = next(r for r in res if r.model == "seasonal_naive_daily")
    np.testing.assert_array_equal(sn.point, sn.actual - 24)
    assert summary["series"]["s"]["seasonal_naive_daily"]["ratio"] == pytest.approx(24 / lead)
    assert (naive.role == "test").sum() == 48 and naive.targets[-1] == n - 1


def test_gbm_forecasts_do_not_look_ahead() -> None:
    """The forecast of y[e + lead - 1] from origin e must not change when the values from e on change."""
    frame = _frame(500)
    y = frame["a"].to_numpy()
    m = forecasters()["gbm"](horizon=3, **TINY_GBM).fit_panel(  # type: ignore[call-arg,attr-defined]
        [frame[c].to_numpy()[:400] for c in frame.columns], freq="1h", timestamps=[frame.index[:400]] * 2)
    ends = np.arange(410, 480)
    before = m.rolling_point(y, ends, 3, frame.index)
    for e in (410, 450):
        z = y.copy()
        z[e:] = 1000.0
        after = m.rolling_point(z, np.array([e]), 3, frame.index)
        assert after[0] == pytest.approx(before[e - 410])


def test_default_never_worse_than_naive_last_on_validation() -> None:
    summary, _ = evaluate_strict(_frame(500), "1h", 2, 24, ("seasonal_naive_daily", "gbm"), n_test=72, n_val=72,
                                 n_warm=24, n_cal=72, params={"gbm": TINY_GBM})
    val = summary["validation"]
    assert "naive_last" in val and val["naive_last"]["ratio_mean"] == pytest.approx(1.0)
    assert val[summary["default"]]["ratio_mean"] <= 1.0
    for v in summary["models"].values():
        assert {"mae", "naive_mae", "ratio", "mase", "relmae", "coverage80", "coverage95"} <= set(v)


def test_conformal_coverage_on_known_noise() -> None:
    """A random walk with Gaussian steps: the naive forecast's lead-k error is N(0, k sigma^2); the calibrated
    80 % and 95 % intervals cover 75-85 % and 92-97 % of the test steps."""
    rng = np.random.default_rng(7)
    n = 4000
    idx = pd.date_range("2024-01-01", periods=n, freq="10min")
    y = 500 + np.cumsum(rng.normal(0, 2.0, n))
    frame = pd.DataFrame({"s": y}, index=idx)
    summary, res = evaluate_strict(frame, "10min", 6, 144, ("naive_last",), n_test=1500, n_val=500, n_warm=300,
                                   n_cal=500)
    t = summary["series"]["s"]["naive_last"]
    assert 0.75 <= t["coverage80"] <= 0.85, t
    assert 0.92 <= t["coverage95"] <= 0.97, t
    # the bands match the known error distribution: 80 % half-width ~ 1.2816 x 2 x sqrt(6)
    r = res[0]
    k = r.role == "test"
    half = np.nanmedian((r.quantiles[0.9][k] - r.quantiles[0.1][k]) / 2)
    assert half == pytest.approx(1.2816 * 2.0 * np.sqrt(6), rel=0.2)


def test_conformal_adapts_when_the_noise_grows() -> None:
    """After the noise triples, adaptive conformal keeps the 80 % coverage near nominal on the new regime."""
    rng = np.random.default_rng(3)
    n = 3000
    sd = np.where(np.arange(n) < 1500, 1.0, 3.0)
    actual = 100 + rng.normal(0, 1, n) * sd
    point = np.full(n, 100.0)
    qd = conformal(actual, point, np.ones(n), 1, n_cal=300, gamma=0.01)
    late = slice(2000, n)
    cov = np.mean((actual[late] >= qd[0.1][late]) & (actual[late] <= qd[0.9][late]))
    assert 0.72 <= cov <= 0.88


def _csv(path: Path, zeros: bool) -> Path:
    idx = pd.date_range("2024-01-01", periods=400, freq="1h")
    rows = []
    for s, base in (("a", 10.0), ("b", 5.0)):
        v = base + 3 * np.sin(2 * np.pi * np.arange(400) / 24)
        if zeros:
            v[100:110] = 0.0  # the whole cluster reads 0 for 10 steps
        rows.append(pd.DataFrame({"time": idx, "vc": s, "gpus": v}))
    df = pd.concat(rows)
    df = df[~((df["vc"] == "a") & (df["time"] == idx[200]))]  # one missing row
    df.to_csv(path, index=False)
    return path


def test_zeros_are_demand_unless_the_user_marks_outages(tmp_path: Path) -> None:
    p = _csv(tmp_path / "z.csv", zeros=True)
    raw = load_csv(p, "time", "gpus", "vc")
    kept, mask = mask_outages(raw)
    assert not mask.iloc[100:110].any() and (kept.iloc[100:110] == 0).all().all()
    frame = demand_from_csv(p, "time", "gpus", "vc", "1h")
    assert (frame.iloc[100:110] == 0).all().all()
    assert np.isnan(frame["a"].iloc[200]) and np.isfinite(frame["b"].iloc[200])  # no row: missing
    flagged = demand_from_csv(p, "time", "gpus", "vc", "1h", outage_value=0)
    assert flagged.iloc[100:110].isna().all().all()
    assert np.isfinite(flagged.iloc[:100].to_numpy()).all()


def test_cli_strict_json_reports_mae_beside_mase(tmp_path: Path) -> None:
    from gpufleet.cli import app

    p = _csv(tmp_path / "d.csv", zeros=True)
    r = CliRunner().invoke(app, ["forecast", "backtest", "--csv", str(p), "--value-col", "gpus", "--series-col",
                                 "vc", "--freq", "1h", "--horizon", "2h", "--season", "1d", "--strict",
                                 "--models", "naive_last,seasonal_naive_daily", "--test-window", "3d",
                                 "--val-window", "3d", "--json"])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.output)
    assert obj["mode"] == "strict" and obj["lead_steps"] == 2
    assert obj["default"] in obj["models"]
    for v in obj["models"].values():
        assert {"mae", "mase", "ratio", "coverage80", "coverage95"} <= set(v)
    # the 10 zero steps are scored as demand, not skipped (they lie before the windows: the series is whole)
    assert obj["series"]["a"]["naive_last"]["ratio"] == pytest.approx(1.0)
    r = CliRunner().invoke(app, ["forecast", "backtest", "--csv", str(p), "--value-col", "gpus", "--series-col",
                                 "vc", "--freq", "7min", "--horizon", "1h", "--strict"])
    assert r.exit_code != 0 and "Traceback" not in r.output


@pytest.mark.data
def test_helios_strict_backtest_small(shared_data: Path) -> None:
    """Two VCs + their total, hourly, one hour ahead, two days of test: naive_last is scored, the default
    is no worse than it on validation, intervals are calibrated."""
    from gpufleet.analytics.forecast import demand_from_helios, with_total
    from gpufleet.analytics.helios import field_frame, load_all

    folder = shared_data / "helios-earth-vc"
    raw = field_frame(load_all(folder, ["vc6YE", "vc8Sj"]))
    frame = with_total(raw).resample("1h").mean()
    assert (raw.sum(axis=1) == 0).any()  # 10 May: zeros, kept as demand
    assert demand_from_helios is not None
    summary, _ = evaluate_strict(frame, "1h", 1, 24, ("naive_last", "seasonal_naive_daily", "gbm"), n_test=48,
                                 n_val=72, n_warm=24, n_cal=72, params={"gbm": TINY_GBM})
    assert set(summary["series"]) == {"vc6YE", "vc8Sj", "total"}
    val = summary["validation"]
    assert val[summary["default"]]["ratio_mean"] <= val["naive_last"]["ratio_mean"]
    t = summary["series"]["total"]
    assert t["naive_last"]["mae"] > 0 and t["seasonal_naive_daily"]["relmae"] == pytest.approx(1.0)
    assert 0.5 <= t[summary["default"]]["coverage80"] <= 1.0
