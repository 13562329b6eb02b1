"""The capacity report: written from a plan, rendered in headless Chromium with every image decoded."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
from gpufleet.allocator.planner import report
from gpufleet.allocator.planner.optimize import PlanSettings, plan_type
from gpufleet.allocator.planner.pricebook import load
from typer.testing import CliRunner

from tests.servers import require_binary

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _evidence() -> report.TypeEvidence:
    rng = np.random.default_rng(0)
    idx = pd.date_range("2024-03-01", periods=14 * 24, freq="1h")
    hist = pd.Series(80 + 20 * np.sin(2 * np.pi * np.arange(len(idx)) / 24) + rng.normal(0, 5, len(idx)), idx)
    paths = np.maximum(80 + 20 * np.sin(2 * np.pi * np.arange(168) / 24) + rng.normal(0, 8, (100, 168)), 0)
    plan = plan_type(load()["A100"], paths, PlanSettings(), hist.to_numpy())
    return report.TypeEvidence(plan, hist, paths, idx[-1] + pd.Timedelta("1h"), "seasonal_mean",
                               {"seasonal_mean": {"mase": 0.8, "pinball": 0.1}},
                               [{"plan": "ours", "realized_cost": 1.0}])


def test_report_files_and_recommendation_first(tmp_path: Path) -> None:
    out = report.write(tmp_path, [_evidence()], load(), PlanSettings(), "Plan")
    text = out["html"].read_text()
    assert text.index("Reserve <b>") < text.index("Evidence") < text.index("forecast fan")
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 2
    md = out["markdown"].read_text()
    assert md.startswith("# Plan") and "## Recommendation" in md and "fan_A100.png" in md
    rec = pd.read_csv(out["csv"])
    assert rec["gpu_type"].tolist() == ["A100"] and int(rec["reserve_gpus"].iloc[0]) >= 0
    assert (tmp_path / "scenarios_A100.csv").exists() and (tmp_path / "backtest_A100.csv").exists()


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    out = report.write(tmp_path / "r", [_evidence()], load(), PlanSettings(), "Plan")
    url = out["html"].resolve().as_uri()
    profile = tmp_path / "profile"
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=90, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'data-images-loaded="(\d+)"', dom.stdout)
    n = re.search(r'data-images="(\d+)"', dom.stdout)
    assert m and n and int(m.group(1)) == int(n.group(1)) == 2
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1100,1600",
                    f"--screenshot={shot}", url], capture_output=True, timeout=90, check=False)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    # the fan chart's blue bands are on the page: many clearly blue pixels
    blue = (img[..., 2] > 0.6) & (img[..., 0] < 0.6) & (img[..., 1] < 0.85)
    assert blue.sum() > 2000


def test_cli_report_capacity_from_csv(tmp_path: Path) -> None:
    from gpufleet.cli import app

    rng = np.random.default_rng(1)
    t = pd.date_range("2024-03-01", periods=16 * 24, freq="1h")
    rows = [pd.DataFrame({"time": t, "type": ty, "gpus": base + 10 * np.sin(2 * np.pi * np.arange(len(t)) / 24)
                          + rng.normal(0, 3, len(t))}) for ty, base in (("A100", 60), ("H100", 30))]
    csv = tmp_path / "d.csv"
    pd.concat(rows).to_csv(csv, index=False)
    prices = tmp_path / "p.yaml"
    prices.write_text("gpus:\n  H100: {on_demand: 10.0}\n")
    r = CliRunner().invoke(app, ["report", "capacity", "--csv", str(csv), "--value-col", "gpus", "--series-col",
                                 "type", "--prices", str(prices), "--holdout", "2d", "--scenarios", "50",
                                 "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    rec = pd.read_csv(tmp_path / "out" / "recommendation.csv")
    assert sorted(rec["gpu_type"]) == ["A100", "H100"]
    ho = pd.read_csv(tmp_path / "out" / "holdout_A100.csv")
    assert len(ho) == 3 and (ho["realized_cost"] > 0).all()
