"""Benchmark: strict-lead short-horizon forecasts, the dev-target table of issue #18 sections 1-3.

Dev series: Helios Earth (16 VCs + total, demand = running + pending GPUs, 10-minute means, zeros are
demand), one hour (6 steps) ahead, test = the last 7 days, validation = the 7 days before, 2-day warm-up for
the interval calibration; the Alibaba GenAI 2026 per-pod GPU duty cycle (1-minute steps, pods present in
>= 90 % of the steps + total), 10 minutes ahead, test = the last 4 hours, validation = the 4 before, season
1 hour (the trace spans 23 hours).  The default is chosen on validation (lowest mean MAE / naive_last MAE).

Prints, per dataset, per model: on the total and on the median series: MAE, naive_last MAE, ratio, MASE
(vs the daily seasonal naive's in-sample error), relMAE vs seasonal naive on the same steps, 80/95 % coverage;
then the targets (default ratio <= 0.75 on total and median series; default relMAE <= 1.05; coverage 80 % in
0.75-0.85 and 95 % in 0.92-0.97).

Run: python benchmarks/forecast_strict.py [--only helios|genai] [--models naive_last,seasonal_naive_daily,gbm]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from gpufleet.analytics.forecast import demand_from_genai, demand_from_helios  # noqa: E402
from gpufleet.analytics.forecast_strict import STRICT_MODELS, evaluate_strict  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
KEYS = ("mae", "naive_mae", "ratio", "mase", "relmae", "coverage80", "coverage95")


def _rows(series: dict[str, dict[str, dict[str, float]]], model: str) -> tuple[dict[str, float], dict[str, float]]:
    tot = series.get("total", {}).get(model, {})
    others = [mm[model] for s, mm in series.items() if s != "total" and model in mm]
    med = {k: float(np.nanmedian([r[k] for r in others])) if others else float("nan") for k in KEYS}
    return tot, med


def _table(title: str, summary: dict, key: str) -> None:
    print(f"\n{title} (default: {summary['default']})")
    print("| model | series | " + " | ".join(KEYS) + " |")
    print("|---" * (len(KEYS) + 2) + "|")
    for m in sorted(summary[key if key != "validation" else "validation_series"]["total"]):
        tot, med = _rows(summary[key if key != "validation" else "validation_series"], m)
        mark = " (default)" if m == summary["default"] else ""
        for label, v in (("total", tot), ("median", med)):
            print(f"| {m}{mark} | {label} | " + " | ".join(f"{v.get(k, float('nan')):.3f}" for k in KEYS) + " |")


def _targets(name: str, summary: dict) -> None:
    d = summary["default"]
    tot, med = _rows(summary["series"], d)
    checks = [
        ("MAE <= 0.75 x naive_last (total)", tot["ratio"] <= 0.75, tot["ratio"]),
        ("MAE <= 0.75 x naive_last (median series)", med["ratio"] <= 0.75, med["ratio"]),
        ("relMAE vs seasonal naive <= 1.05 (total)", tot["relmae"] <= 1.05, tot["relmae"]),
        ("relMAE vs seasonal naive <= 1.05 (median series)", med["relmae"] <= 1.05, med["relmae"]),
        ("coverage80 in 0.75-0.85 (total)", 0.75 <= tot["coverage80"] <= 0.85, tot["coverage80"]),
        ("coverage80 in 0.75-0.85 (median series)", 0.75 <= med["coverage80"] <= 0.85, med["coverage80"]),
        ("coverage95 in 0.92-0.97 (total)", 0.92 <= tot["coverage95"] <= 0.97, tot["coverage95"]),
        ("coverage95 in 0.92-0.97 (median series)", 0.92 <= med["coverage95"] <= 0.97, med["coverage95"]),
    ]
    print(f"\n{name}: targets for the default ({d}), test window")
    for label, ok, v in checks:
        print(f"  {'met    ' if ok else 'NOT met'}  {label}: {v:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("helios", "genai"))
    ap.add_argument("--models", default=",".join(STRICT_MODELS))
    args = ap.parse_args()
    models = tuple(args.models.split(","))
    runs = []
    if args.only in (None, "helios"):
        runs.append(("Helios 10min, 1 h ahead", lambda: demand_from_helios(DATA / "helios-earth-vc", "10min"),
                     {"freq": "10min", "lead": 6, "season": 144, "n_test": 1008, "n_val": 1008, "n_warm": 288,
                      "n_cal": 1008}))
    if args.only in (None, "genai"):
        runs.append(("Alibaba GenAI 1min, 10 min ahead", lambda: demand_from_genai(DATA / "alibaba-genai-2026"),
                     {"freq": "1min", "lead": 10, "season": 60, "n_test": 240, "n_val": 240, "n_warm": 120,
                      "n_cal": 240}))
    for name, load, kw in runs:
        t0 = time.time()
        frame: pd.DataFrame = load()
        summary, _ = evaluate_strict(frame, models=models, **kw)
        print(f"\n## {name}: {frame.shape[1]} series, {len(frame)} steps, {time.time() - t0:.0f} s wall")
        _table("validation window", summary, "validation")
        _table("test window", summary, "series")
        _targets(name, summary)


if __name__ == "__main__":
    main()
