"""Demand series (CSV, outages, aggregation), the rolling-origin backtest, calibration and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gpufleet.analytics.backtest import calibrate, evaluate, plan_origins, run_backtest, score
from gpufleet.analytics.forecast import aggregate, demand_from_csv, load_csv, mask_outages
from gpufleet.exporter.errors import InputError
from gpufleet.models.forecast_base import forecasters
from typer.testing import CliRunner


def _csv(path: Path, days: int = 20, outage: bool = True) -> Path:
    rng = np.random.default_rng(0)
    t = pd.date_range("2024-01-01", periods=days * 24 * 6, freq="10min")
    rows = []
    for s, base in (("a", 40), ("b", 20)):
        v = base + 10 * np.sin(2 * np.pi * np.arange(len(t)) / 144) + rng.normal(0, 2, len(t))
        v = np.maximum(v, 1)
        if outage:
            v[1000:1100] = 0  # the whole cluster reads 0: an outage
        rows.append(pd.DataFrame({"time": t, "vc": s, "gpus": v}))
    df = pd.concat(rows)
    df.to_csv(path, index=False)
    return path


def test_outages_are_missing_not_zero(tmp_path: Path) -> None:
    raw = load_csv(_csv(tmp_path / "d.csv"), "time", "gpus", "vc")
    masked, mask = mask_outages(raw, outage_value=0)  # the user says 0 marks an outage
    assert mask.sum() == 100
    assert masked.iloc[1000:1100].isna().all().all()
    assert masked.iloc[:1000].notna().all().all()
    hourly = aggregate(masked, "1h", "mean")
    # buckets fully inside the outage are NaN; the rest keep a value
    assert hourly.isna().any(axis=1).sum() in (16, 17, 18)
    assert hourly["a"].mean() == pytest.approx(40, abs=2)


def test_csv_errors_name_file_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("time,gpus\n2024-01-01 00:00,3\n2024-01-01 01:00,three\n")
    with pytest.raises(InputError) as exc:
        load_csv(p, "time", "gpus")
    assert exc.value.line == 3 and exc.value.column == "gpus" and "bad.csv" in str(exc.value)
    with pytest.raises(InputError, match="missing column"):
        load_csv(p, "time", "nope")


def test_plan_origins_roles() -> None:
    idx = pd.date_range("2024-01-01", periods=20 * 24, freq="1h")
    o = plan_origins(idx, 24, n_test=7, n_val=7)
    roles = list(o.values())
    assert roles == ["val"] * 7 + ["test"] * 7
    assert max(o) == idx[-24]
    assert all(a < b for a, b in zip(list(o)[:-1], list(o)[1:], strict=True))


def test_calibration_brings_coverage_close_to_nominal() -> None:
    rng = np.random.default_rng(1)
    idx = pd.date_range("2024-01-01", periods=40 * 24, freq="1h")
    y = 100 + 30 * np.sin(2 * np.pi * np.arange(len(idx)) / 24) + rng.normal(0, 10, len(idx))
    frame = pd.DataFrame({"s": y}, index=idx)
    reg = forecasters()
    origins = plan_origins(idx, 24, n_test=14, n_val=7)
    res = run_backtest(frame, {"seasonal_mean": reg["seasonal_mean"]}, "1h", 24, 24, origins)  # type: ignore[dict-item]
    calibrate(res, n_cal=7)
    sc = score(res, "test")["models"]["seasonal_mean"]
    assert 0.7 <= sc["coverage80"] <= 0.9
    assert 0.88 <= sc["coverage95"] <= 1.0


def test_evaluate_scores_against_seasonal_naive(tmp_path: Path) -> None:
    frame = demand_from_csv(_csv(tmp_path / "d.csv"), "time", "gpus", "vc", "1h", "mean", outage_value=0)
    summary, _ = evaluate(frame, "1h", 24, 24, ("seasonal_naive_daily", "seasonal_mean", "ets"), n_test=4, n_val=4)
    m = summary["models"]
    assert m["seasonal_naive_daily"]["relmae"] == pytest.approx(1.0)
    assert m["seasonal_mean"]["mase"] < m["seasonal_naive_daily"]["mase"]
    assert summary["default"] in ("seasonal_mean", "ets")
    assert "naive_last" in m and "mae" in m["naive_last"]  # always scored, MAE beside MASE
    assert set(summary["series"]) == {"a", "b"}


def test_cli_backtest_json_and_report(tmp_path: Path) -> None:
    from gpufleet.cli import app

    csv = _csv(tmp_path / "d.csv", days=16)
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["forecast", "backtest", "--csv", str(csv), "--time-col", "time", "--value-col",
                                 "gpus", "--series-col", "vc", "--freq", "1h", "--agg", "mean", "--horizon", "1d",
                                 "--season", "1d,7d", "--models", "seasonal_naive_daily,seasonal_mean",
                                 "--test-origins", "3", "--val-origins", "3", "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.output)
    assert obj["default"] in obj["models"]
    for v in obj["models"].values():
        assert set(v) >= {"mase", "smape", "pinball", "coverage80", "coverage95"}
    assert set(obj["series"]) == {"a", "b"}
    assert (out / "report.md").exists() and (out / "fan_a.png").stat().st_size > 1000


def test_cli_bad_file_is_one_error(tmp_path: Path) -> None:
    from gpufleet.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["forecast", "backtest", "--csv", str(tmp_path / "none.csv"), "--value-col", "x"])
    assert exc.value.code == 3


def test_widened_and_scaled_calibration() -> None:
    """widen > 1 takes more extreme residual quantiles (wider bands, never narrower); scaled calibration
    follows the current origin's volatility: after the noise triples, its bands are wider than plain ones."""
    rng = np.random.default_rng(2)
    idx = pd.date_range("2024-01-01", periods=30 * 24, freq="1h")
    noise = np.where(np.arange(len(idx)) >= 21 * 24, 15.0, 5.0)
    y = 100 + 30 * np.sin(2 * np.pi * np.arange(len(idx)) / 24) + rng.normal(0, 1, len(idx)) * noise
    frame = pd.DataFrame({"s": y}, index=idx)
    reg = forecasters()
    origins = plan_origins(idx, 24, n_test=3, n_val=7)
    res = run_backtest(frame, {"seasonal_mean": reg["seasonal_mean"]}, "1h", 24, 24, origins)  # type: ignore[dict-item]
    test = [r for r in res if r.role == "test"]
    assert all(np.isfinite(r.recent_scale) and r.recent_scale > 0 for r in res)

    def width() -> float:
        return float(np.mean([np.mean(r.quantiles[0.9] - r.quantiles[0.1]) for r in test]))

    calibrate(res, n_cal=7)
    plain = width()
    calibrate(res, n_cal=7, widen=1.1)
    assert width() >= plain
    calibrate(res, n_cal=7, scaled=True)
    assert width() > plain
