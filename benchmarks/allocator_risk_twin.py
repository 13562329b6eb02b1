"""Risk-aware vs risk-blind placement in the digital twin, with failures on, over several seeds.

Usage: python benchmarks/allocator_risk_twin.py [--seeds 1-5] [--days 14] [--nodes 16] [--rate 20]
Both arms run the same twin (same seed: same inventory, workload and failure draws) with the composite
default policy; the risk-aware arm gets each GPU's predicted failure probability over 24 h, the
risk-blind arm the same policy with risk weight 0. The risk is a *prior* from what an operator knows
without telemetry: the GPU's age (Titan's hazard by year of life) and its slot / rack position, times the
InfiniteHBD base rate (the twin's failure rates come from the same sources, see docs/twin.md); the LSTM
predictor's per-GPU risk replaces it once it runs in the loop. ``--rate`` multiplies the failure rate so a
two-week run sees enough failures to compare.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from allocator.policies import make_policy
from allocator.twin_placer import PolicyPlacer, measure
from simulator.failures import BASE_RATE_PER_GPU_DAY, age_multiplier
from simulator.twin import Twin, TwinConfig

START = 1_767_225_600.0  # 2026-01-01


def prior_risk(twin: Twin, rate: float, horizon_days: float = 1.0) -> np.ndarray:
    fm = twin.failures
    elapsed = max(0.0, ((twin.now or START) - START) / 86400.0)
    hazard = BASE_RATE_PER_GPU_DAY * rate * age_multiplier(fm.age0 + elapsed) * fm.pos_mult
    return np.asarray(1.0 - np.exp(-hazard * horizon_days))


def run_arm(seed: int, risk_weight: float, days: float, nodes: int, rate: float) -> dict[str, float]:
    cfg = TwinConfig(nodes=nodes, gpus_per_node=8, seed=seed, failure_rate_multiplier=rate, step_s=300.0,
                     warmup_s=6 * 3600.0)
    policy = make_policy("default", seed=seed, risk_weight=risk_weight)
    placer = PolicyPlacer(policy)
    twin = Twin(cfg, placer=placer)
    placer.risk = lambda: prior_risk(twin, rate)
    return measure(twin, START, days, hazard=lambda: true_hazard(twin, rate))


def true_hazard(twin: Twin, rate: float) -> np.ndarray:
    """The twin's failure rate per GPU per second (its ground truth), for the expected loss."""
    fm = twin.failures
    elapsed = max(0.0, ((twin.now or START) - START) / 86400.0)
    return np.asarray(BASE_RATE_PER_GPU_DAY / 86400.0 * rate * age_multiplier(fm.age0 + elapsed) * fm.pos_mult)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1-5")
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--risk-weight", type=float, default=1000.0)
    args = ap.parse_args()
    a, b = (int(x) for x in args.seeds.split("-"))
    rows = []
    for seed in range(a, b + 1):
        blind = run_arm(seed, 0.0, args.days, args.nodes, args.rate)
        aware = run_arm(seed, args.risk_weight, args.days, args.nodes, args.rate)
        rows.append({"seed": seed, "blind": blind, "aware": aware})
        print(json.dumps(rows[-1]), flush=True)
    for arm in ("blind", "aware"):
        lost = [r[arm]["gpu_hours_lost"] for r in rows]
        al = [r[arm]["allocation_mean"] for r in rows]
        exp = [r[arm]["expected_gpu_hours_lost"] for r in rows]
        print(f"{arm:6s} GPU-hours lost {np.mean(lost):8.1f} ± {np.std(lost):6.1f}   expected {np.mean(exp):8.1f} ± "
              f"{np.std(exp):6.1f}   allocation {np.mean(al):.3f}   interrupted "
              f"{np.mean([r[arm]['interrupted_jobs'] for r in rows]):.1f}")


if __name__ == "__main__":
    main()
