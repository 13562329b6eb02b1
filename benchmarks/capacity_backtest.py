"""Benchmark: the capacity plan's realised cost vs the backward-looking 30-day reservation rule on Helios.

Every Helios virtual cluster and the total, hourly demand (running + pending GPUs; outage minutes are
missing data), V100 prices.  Per case: plan on the first 14, 21 or 28 days, charge the plan and the rule
with the real following week (the data ends on day 31, so the 28-day cases get 3 days).  The plan's
configuration (forecaster, quantile around the newsvendor ratio, or the rule itself) is chosen on the
validation week (the last week of the history, planned on the days before it); the test week is charged
once.  A 1-year term needs 14 days of history and a 3-year term 28, so the 14/21-day cases plan 1-year
all-upfront reservations and the 28-day cases 3-year ones, for the plan and the rule alike.  On-demand is
unlimited, so shortfall is 0 for both.  "oracle" is the best constant reservation in hindsight: no plan
can save more than it does against the rule.

Run: python benchmarks/capacity_backtest.py [--series total,vc6YE] [--days 14,21,28] [--paths 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpufleet.allocator.planner.evaluate import CANDIDATE_MODELS, capacity_case  # noqa: E402
from gpufleet.allocator.planner.pricebook import load  # noqa: E402
from gpufleet.analytics.forecast import demand_from_helios  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT.parent / "shared" / "data" / "helios-earth-vc"))
    ap.add_argument("--gpu", default="V100")
    ap.add_argument("--series", default="", help="comma-separated (default: every VC and the total)")
    ap.add_argument("--days", default="14,21,28")
    ap.add_argument("--paths", type=int, default=200)
    ap.add_argument("--models", default=",".join(CANDIDATE_MODELS))
    args = ap.parse_args()
    t0 = time.perf_counter()
    frame = demand_from_helios(args.dir, "1h")
    price = load()[args.gpu]
    names = args.series.split(",") if args.series else list(frame.columns)
    print(f"{'case':7s} {'days':>4s} {'test h':>6s} {'option':15s} {'chosen':24s} {'R':>5s} {'rule R':>6s} "
          f"{'plan cost':>10s} {'rule cost':>10s} {'saving %':>8s} {'oracle %':>8s} {'short plan':>10s} "
          f"{'short rule':>10s}")
    cases = []
    for name in names:
        for d in (int(x) for x in args.days.split(",")):
            c = capacity_case(frame[name], d, price, models=tuple(args.models.split(",")), n=args.paths)
            cases.append(c)
            print(f"{name:7s} {d:4d} {c.test_hours:6d} {c.option:15s} {c.choice:24s} {c.reserved:5d} "
                  f"{c.rule_reserved:6d} {c.cost:10,.0f} {c.rule_cost:10,.0f} {100 * c.saving:8.2f} "
                  f"{100 * (1 - c.oracle_cost / c.rule_cost) if c.rule_cost else 0:8.2f} {c.unmet:10.0f} "
                  f"{c.rule_unmet:10.0f}", flush=True)
    wins = sum(c.saving >= 0.02 and c.unmet <= c.rule_unmet for c in cases)
    oracle = sum(c.rule_cost > 0 and 1 - c.oracle_cost / c.rule_cost >= 0.02 for c in cases)
    losses = sum(c.saving < 0 for c in cases)
    total = sum(c.cost for c in cases) / sum(c.rule_cost for c in cases) - 1
    print(f"\nwins (>= 2 % below the rule at equal or lower shortfall): {wins} of {len(cases)} "
          f"({wins / len(cases):.0%}); target 80 %: {'MET' if wins >= 0.8 * len(cases) else 'NOT MET'}")
    print(f"cases where even the hindsight oracle is >= 2 % below the rule: {oracle} of {len(cases)} "
          f"({oracle / len(cases):.0%}); plan dearer than the rule: {losses}; summed cost vs rule {100 * total:+.2f} %")
    print(f"wall {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
