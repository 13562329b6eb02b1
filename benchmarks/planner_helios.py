"""Benchmark: capacity plans charged with the real last week of Helios demand, and the autoscaling replay.

Planner: hourly demand of a Helios series; plan on everything before the last 7 days (24 days; and, as a
sensitivity, on the first 21 days only with a 3-day gap), then charge our SAA plan, (a) all on-demand and
(b) the backward-looking 30-day rule with the real last week.  The forecaster is chosen by a short backtest
on the planning history only.  Autoscaling: minute replay, stabilised policy vs the reactive rule.

Run: python benchmarks/planner_helios.py [--gpu V100] [--series total,vc6YE,...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpufleet.allocator.autoscale import AutoscaleSettings, autoscale_backtest  # noqa: E402
from gpufleet.allocator.planner.evaluate import holdout  # noqa: E402
from gpufleet.allocator.planner.optimize import PlanSettings  # noqa: E402
from gpufleet.allocator.planner.pricebook import load  # noqa: E402
from gpufleet.analytics.backtest import evaluate  # noqa: E402
from gpufleet.analytics.forecast import demand_from_helios  # noqa: E402

PLAN_MODELS = ("seasonal_naive_daily", "seasonal_mean", "ets", "theta", "ensemble")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT.parent / "shared" / "data" / "helios-earth-vc"))
    ap.add_argument("--gpu", default="V100")
    ap.add_argument("--series", default="total,vc6YE,vcvlY,vcpDC,vcLJZ")
    ap.add_argument("--spot-share", type=float, default=0.0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    frame = demand_from_helios(args.dir, "1h")
    price = load()[args.gpu]
    settings = PlanSettings(spot_share=args.spot_share)
    week = 7 * 24
    for name in args.series.split(","):
        y = frame[name]
        actual = y.iloc[-week:].to_numpy(dtype=float)
        for label, hist, skip in (("24 days", y.iloc[:-week], 0), ("21 days + 3-day gap", y.iloc[:21 * 24], 72)):
            bt, _ = evaluate(hist.to_frame(name), "1h", 24, 24, PLAN_MODELS, n_test=3, n_val=3)
            res = holdout(hist, actual, price, bt["default"], settings, skip_h=skip, n=300, seed=0)
            ours, od, rule = res.rows
            print(f"{name:6s} plan on {label:20s} model {bt['default']:14s} option {ours['option']}: "
                  f"ours R={ours['reserved']:4d} cost {ours['realized_cost']:10,.0f} | (a) all on-demand "
                  f"{od['realized_cost']:10,.0f} | (b) 30-day rule R={rule['reserved']:4d} cost "
                  f"{rule['realized_cost']:10,.0f} | ours vs (b) {100 * (ours['realized_cost'] / rule['realized_cost'] - 1):+.2f} %"
                  f" | unmet GPU-h ours {ours['unmet_gpu_hours']:.0f} (b) {rule['unmet_gpu_hours']:.0f}")
    print(f"planner wall {time.perf_counter() - t0:.1f} s")
    t1 = time.perf_counter()
    rows = autoscale_backtest(args.dir, AutoscaleSettings(), 300.0)
    tot = {k: 0.0 for k in rows[0] if k != "series"}
    for r in rows:
        if r["series"] != "total":
            for k in tot:
                tot[k] += float(r[k])
    print("\nautoscaling replay (8 GPUs/node, scale-out window 300 s, scale-in window 1800 s, 300 s provisioning):")
    summed: dict[str, float | int | str] = {"series": "sum of 16 VCs", **tot}
    for r in [*rows[:1], summed]:
        print(f"{r['series']!s:14s} stabilised: idle {float(r['idle_gpu_hours']):9,.0f} GPU-h, pending "
              f"{float(r['pending_gpu_hours']):7,.0f} GPU-h, {int(r['scale_events']):6d} changes | reactive: idle "
              f"{float(r['reactive_idle_gpu_hours']):9,.0f}, pending {float(r['reactive_pending_gpu_hours']):7,.0f},"
              f" {int(r['reactive_scale_events']):6d} changes")
    print(f"autoscale wall {time.perf_counter() - t1:.1f} s")


if __name__ == "__main__":
    main()
