"""Charge capacity plans with the demand that really came: plan on history, score on the hold-out week.

Used by ``benchmarks/planner_helios.py`` and the capacity report: our SAA plan (from forecast sample paths)
vs (a) all on-demand and (b) the backward-looking rule (reserve what would have maximised savings over the
last 30 days of usage), all charged with the real hold-out demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from gpufleet.allocator.planner.optimize import PlanSettings, TypePlan, backward_rule, charge, plan_type
from gpufleet.allocator.planner.pricebook import GpuPrice


def forecast_paths(history: pd.Series, model: str, horizon_h: int, n: int = 200, seed: int = 0,
                   skip_h: int = 0) -> tuple[np.ndarray, Any]:
    """Sample paths (n, horizon_h) of hourly demand from ``model`` fitted on ``history`` (hourly); the first
    ``skip_h`` forecast hours are dropped (a gap between the data and the planned window)."""
    from gpufleet.models.forecast_base import forecasters

    m = forecasters()[model]().fit(history.to_numpy(dtype=float), freq="1h", timestamps=history.index)  # type: ignore[attr-defined]
    fc = m.predict(skip_h + horizon_h)
    return fc.sample_paths(n, seed)[:, skip_h:], fc


@dataclass
class HoldoutResult:
    plan: TypePlan
    rows: list[dict[str, Any]]


def holdout(history: pd.Series, actual: np.ndarray, price: GpuPrice, model: str, settings: PlanSettings,
            skip_h: int = 0, n: int = 200, seed: int = 0) -> HoldoutResult:
    """Plan on ``history`` (hourly), charge our plan, all on-demand and the backward rule with ``actual``."""
    paths, _ = forecast_paths(history, model, len(actual), n, seed, skip_h)
    plan = plan_type(price, paths, settings, history.to_numpy(dtype=float))
    option = plan.option
    rb = backward_rule(price, history.to_numpy(dtype=float), option)
    rows = []
    for label, r in (("ours (SAA on forecast)", plan.reserved), ("(a) all on-demand", 0),
                     ("(b) backward 30-day rule", rb)):
        c = charge(price, r, actual, settings, option)
        rows.append({"plan": label, "reserved": int(r), "option": option, "realized_cost": float(c.cost[0]),
                     "on_demand_gpu_hours": float(c.on_demand_hours[0]), "spot_gpu_hours": float(c.spot_hours[0]),
                     "unmet_gpu_hours": float(c.unmet_hours[0]), "short_hours_share": float(c.short_share[0])})
    return HoldoutResult(plan, rows)
