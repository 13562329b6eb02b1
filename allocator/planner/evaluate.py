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
from gpufleet.exporter.errors import GpufleetError, InputError


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


# -- the realised-cost backtest: plan on the first days, charge the following week ------------------------
CANDIDATE_MODELS = ("seasonal_mean", "seasonal_naive_weekly", "ets", "theta", "combo")
QUANTILE_SHIFTS = (-0.1, 0.0, 0.1)


@dataclass
class CapacityCase:
    series: str
    history_days: int
    test_hours: int
    option: str
    choice: str                 # configuration chosen on the validation week
    reserved: int
    rule_reserved: int
    cost: float
    rule_cost: float
    oracle_cost: float          # the best constant reservation in hindsight (a bound no plan can beat)
    unmet: float
    rule_unmet: float
    validation: dict[str, float]

    @property
    def saving(self) -> float:
        return 1 - self.cost / self.rule_cost if self.rule_cost > 0 else 0.0


def _reserve(price: GpuPrice, paths: np.ndarray, option: str, shift: float) -> int:
    """The newsvendor reservation at the critical ratio ``1 - c_r / c_od`` moved by ``shift``."""
    q = float(np.clip(1 - price.reserved[option] / price.on_demand + shift, 0.01, 0.99))
    return round(float(np.quantile(np.clip(paths, 0, None).ravel(), q)))


def _configs(models: tuple[str, ...], shifts: tuple[float, ...]) -> list[tuple[str, float]]:
    return [("rule", 0.0)] + [(m, s) for m in models for s in shifts]


def _plan_with(cfg: tuple[str, float], history: pd.Series, hours: int, price: GpuPrice, option: str, n: int,
               seed: int) -> int:
    model, shift = cfg
    if model == "rule":
        return backward_rule(price, history.to_numpy(dtype=float), option)
    paths, _ = forecast_paths(history, model, hours, n, seed)
    return _reserve(price, paths, option, shift)


def capacity_case(y: pd.Series, history_days: int, price: GpuPrice, settings: PlanSettings | None = None,
                  models: tuple[str, ...] = CANDIDATE_MODELS, shifts: tuple[float, ...] = QUANTILE_SHIFTS,
                  n: int = 200, seed: int = 0, week_h: int = 7 * 24) -> CapacityCase:
    """One time-split case on hourly demand ``y``: plan on its first ``history_days`` days, charge the plan
    and the backward-looking 30-day rule with the real following week (shorter where the data ends).

    The configuration (forecaster, quantile shift around the newsvendor ratio, or the rule itself) is chosen
    on the validation week, the last week of the history (planned on the days before it); the test week is
    charged once with the chosen configuration refitted on the whole history."""
    from gpufleet.allocator.planner.fleet import options_for_history

    settings = settings or PlanSettings()
    cut = history_days * 24
    hist, actual = y.iloc[:cut], y.iloc[cut:cut + week_h].to_numpy(dtype=float)
    if len(actual) == 0:
        raise InputError(f"{y.name}: no demand after the first {history_days} days to charge a plan with")
    option = price.cheapest_reserved(options_for_history(float(history_days), settings.allowed_options))[0]
    val_h = min(week_h, cut // 2)
    fit, val = hist.iloc[:-val_h], hist.iloc[-val_h:].to_numpy(dtype=float)
    scores: dict[str, float] = {}
    for cfg in _configs(models, shifts):
        try:
            r = _plan_with(cfg, fit, val_h, price, option, n, seed)
        except (ValueError, GpufleetError):
            continue
        scores[f"{cfg[0]}{cfg[1]:+.1f}"] = float(charge(price, r, val, settings, option).cost[0])
    best = min(scores, key=lambda k: (scores[k], k != "rule+0.0"))
    cfg = (best[:-4], float(best[-4:]))
    r = _plan_with(cfg, hist, len(actual), price, option, n, seed)
    rb = backward_rule(price, hist.to_numpy(dtype=float), option)
    c, cb = charge(price, r, actual, settings, option), charge(price, rb, actual, settings, option)
    top = int(np.ceil(np.nanmax(actual))) + 1 if np.isfinite(actual).any() else 1
    oracle = min(float(charge(price, k, actual, settings, option).cost[0]) for k in range(top + 1))
    return CapacityCase(str(y.name), history_days, len(actual), option, best, int(r), int(rb), float(c.cost[0]),
                        float(cb.cost[0]), oracle, float(c.unmet_hours[0]), float(cb.unmet_hours[0]), scores)
