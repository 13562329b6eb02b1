"""Benchmark: day-ahead demand forecasts on Helios (16 VCs + total), hourly and 10-minute steps.

Protocol: demand = running_gpu_num + pending_gpu_num; whole-cluster zero minutes are outages (missing);
origins one day apart, the last 7 days are test origins, the 7 days before them validation origins (the
default model is chosen there, by median MASE); intervals calibrated conformally from earlier origins.
Prints the test figures per model, the default's figures against the issue's targets, and the wall time.

Run: python benchmarks/forecast_helios.py [--freq 1h,10min] [--jobs 2] [--models ...]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpufleet.analytics.backtest import DEFAULT_MODELS, evaluate  # noqa: E402
from gpufleet.analytics.forecast import demand_from_helios  # noqa: E402
from gpufleet.models.forecast_base import steps_per  # noqa: E402


def _cpu() -> float:
    """User + system CPU seconds of this process and its finished children (the worker processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT.parent / "shared" / "data" / "helios-earth-vc"))
    ap.add_argument("--freq", default="1h,10min")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    args = ap.parse_args()
    models = tuple(args.models.split(","))
    for freq in args.freq.split(","):
        t0 = time.perf_counter()
        c0 = _cpu()
        frame = demand_from_helios(args.dir, freq)
        h = steps_per("1d", freq)
        summary, _ = evaluate(frame, freq, h, h, models, n_test=7, n_val=7, n_jobs=args.jobs)
        wall = time.perf_counter() - t0
        cpu = _cpu() - c0
        d = summary["default"]
        print(f"\n== Helios {freq}: {frame.shape[1]} series, {len(models)} models, wall {wall:.1f} s "
              f"(load + backtest, {args.jobs} processes), CPU {cpu:.1f} s (this process + workers)")
        print(f"{'model':24s} {'MASE med':>8s} {'relMAE med':>10s} {'pinball':>8s} {'cov80':>6s} {'cov95':>6s} | "
              f"{'total MASE':>10s} {'total relMAE':>12s} {'total pinball':>13s} {'total cov80':>11s}")
        for m, a in sorted(summary["models"].items(), key=lambda kv: kv[1]["mase"]):
            t = summary["series"]["total"][m]
            mark = "*" if m == d else " "
            print(f"{m + mark:24s} {a['mase']:8.3f} {a['relmae']:10.3f} {a['pinball']:8.3f} {a['coverage80']:6.3f} "
                  f"{a['coverage95']:6.3f} | {t['mase']:10.3f} {t['relmae']:12.3f} {t['pinball']:13.3f} "
                  f"{t['coverage80']:11.3f}")
        base = summary["models"]["seasonal_naive_daily"]
        a, t = summary["models"][d], summary["series"]["total"][d]
        tb = summary["series"]["total"]["seasonal_naive_daily"]
        print(f"default (chosen on validation) = {d}; validation median MASE: "
              + ", ".join(f"{m} {v['mase']:.3f}" for m, v in sorted(summary["validation"].items())))
        print(f"targets: total MASE {t['mase']:.3f} (relMAE {t['relmae']:.3f}) <= 0.88 -> "
              f"{'met' if t['mase'] <= 0.88 else 'NOT met'}; median MASE {a['mase']:.3f} (relMAE {a['relmae']:.3f}) "
              f"<= 0.80 -> {'met' if a['mase'] <= 0.80 else 'NOT met'}; pinball {a['pinball']:.3f} vs naive "
              f"{base['pinball']:.3f} (total {t['pinball']:.3f} vs {tb['pinball']:.3f}); coverage80 "
              f"{a['coverage80']:.3f} (total {t['coverage80']:.3f}) in [0.75, 0.85]")


if __name__ == "__main__":
    main()
