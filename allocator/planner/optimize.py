"""Capacity plan by sample average approximation (SAA) over forecast demand scenarios.

Per GPU type, given S scenarios of hourly demand (GPUs) over a window of T hours:

- ``R`` GPUs are reserved (billed every hour at the cheapest allowed reserved option's effective rate);
- demand above ``R`` runs on spot for the share ``spot_share`` of the work (interruptible, checkpointing
  jobs) when spot, counting the work lost and redone after interruptions, is cheaper than on-demand; spot
  requests are granted with probability ``spot_availability`` (the rest falls to on-demand);
- the rest runs on demand, up to ``on_demand_cap`` GPUs (None = unlimited); demand beyond is unmet.

``R`` minimises the scenario-average cost subject to the service level: the share of scenario-hours with unmet
demand <= ``max_shortfall_prob`` and/or expected unmet GPU-hours over the window <= ``max_unmet_gpu_hours``.
With one type, no spot and no cap this is the newsvendor: R = F^-1(1 - c_reserved / c_on_demand) of hourly
demand pooled over hours and scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from gpufleet.allocator.planner.pricebook import OPTIONS, GpuPrice
from gpufleet.exporter.errors import InputError


@dataclass(frozen=True)
class PlanSettings:
    spot_share: float = 0.0                 # share of work above the reservation that may run on spot
    spot_availability: float = 1.0          # probability a spot request is granted in an hour
    on_demand_cap: float | None = None      # GPUs on demand at most (quota); None = unlimited
    max_shortfall_prob: float | None = None
    max_unmet_gpu_hours: float | None = None
    allowed_options: tuple[str, ...] = OPTIONS


@dataclass
class Charge:
    """What one capacity level costs against demand (per scenario when given several)."""

    cost: np.ndarray
    reserved_hours: float
    on_demand_hours: np.ndarray
    spot_hours: np.ndarray
    unmet_hours: np.ndarray
    short_share: np.ndarray           # share of hours with unmet demand


@dataclass
class TypePlan:
    gpu_type: str
    option: str
    reserved: int
    reserved_by_option: dict[str, int]
    hours: int
    expected_cost: float
    cost_interval90: tuple[float, float]
    expected_on_demand_hours: float
    expected_spot_hours: float
    shortfall_prob: float
    expected_unmet_hours: float
    break_even_utilization: float
    all_on_demand_cost: float
    savings_vs_on_demand: float
    cost_samples: np.ndarray = field(repr=False)
    backward_reserved: int | None = None
    savings_vs_backward: float | None = None


def charge(price: GpuPrice, reserved: float, demand: np.ndarray, settings: PlanSettings, option: str | None = None,
           ) -> Charge:
    """Cost and shortfall of holding ``reserved`` GPUs against ``demand`` (shape (T,) or (S, T))."""
    d = np.atleast_2d(np.asarray(demand, dtype=float))
    d = np.where(np.isfinite(d), d, 0.0)
    _opt, rate = price.cheapest_reserved(settings.allowed_options) if option is None else (option,
                                                                                          price.reserved[option])
    t = d.shape[1]
    excess = np.maximum(d - reserved, 0.0)
    use_spot = settings.spot_share > 0 and price.spot_effective < price.on_demand
    spot_work = excess * settings.spot_share * settings.spot_availability if use_spot else np.zeros_like(excess)
    od = excess - spot_work
    cap = settings.on_demand_cap
    unmet = np.maximum(od - cap, 0.0) if cap is not None else np.zeros_like(od)
    od = od - unmet
    spot_hours = spot_work * price.spot_redo_factor
    cost = reserved * rate * t + od.sum(axis=1) * price.on_demand + spot_hours.sum(axis=1) * price.spot
    return Charge(cost, reserved * t, od.sum(axis=1), spot_hours.sum(axis=1), unmet.sum(axis=1),
                  (unmet > 1e-9).mean(axis=1))


def _best_reserved(price: GpuPrice, scenarios: np.ndarray, settings: PlanSettings, option: str) -> int:
    """Integer SAA optimum.  The average cost is convex in R and the shortfall measures fall with R, so the
    answer is max(smallest R meeting the service level, unconstrained minimiser), both by bisection."""
    hi = int(np.ceil(np.nanmax(scenarios))) if np.isfinite(scenarios).any() else 0

    def cost(r: int) -> float:
        return float(charge(price, r, scenarios, settings, option).cost.mean())

    def feasible(r: int) -> bool:
        c = charge(price, r, scenarios, settings, option)
        if settings.max_shortfall_prob is not None and float(c.short_share.mean()) > settings.max_shortfall_prob:
            return False
        return not (settings.max_unmet_gpu_hours is not None
                    and float(c.unmet_hours.mean()) > settings.max_unmet_gpu_hours)

    if not feasible(hi):
        raise InputError("no reservation meets the service level: raise the on-demand cap or relax the target")
    lo_f, hi_f = 0, hi
    while lo_f < hi_f:  # smallest feasible R
        mid = (lo_f + hi_f) // 2
        if feasible(mid):
            hi_f = mid
        else:
            lo_f = mid + 1
    lo, up = 0, hi
    while lo < up:  # first R where cost stops decreasing
        mid = (lo + up) // 2
        if cost(mid + 1) < cost(mid) - 1e-9:
            lo = mid + 1
        else:
            up = mid
    return max(lo, lo_f)


def plan_type(price: GpuPrice, scenarios: np.ndarray, settings: PlanSettings | None = None,
              history: np.ndarray | None = None) -> TypePlan:
    """The SAA plan for one GPU type; ``history`` (hourly usage) adds the backward-looking rule's figures."""
    settings = settings or PlanSettings()
    sc = np.atleast_2d(np.asarray(scenarios, dtype=float))
    if sc.size == 0:
        raise InputError(f"{price.gpu_type}: no demand scenarios")
    option, _rate = price.cheapest_reserved(settings.allowed_options)
    by_opt = {o: _best_reserved(price, sc, settings, o) for o in settings.allowed_options if o in price.reserved}
    return summarise(price, by_opt[option], sc, settings, option, history, by_opt)


def summarise(price: GpuPrice, reserved: int, scenarios: np.ndarray, settings: PlanSettings, option: str,
              history: np.ndarray | None = None, by_option: dict[str, int] | None = None) -> TypePlan:
    """The :class:`TypePlan` figures of holding ``reserved`` GPUs of one type (``option``) against
    ``scenarios``; ``history`` (hourly usage) adds the backward-looking rule's figures."""
    sc = np.atleast_2d(np.asarray(scenarios, dtype=float))
    rate = price.reserved[option]
    r = int(reserved)
    c = charge(price, r, sc, settings, option)
    od_all = charge(price, 0, sc, PlanSettings(allowed_options=(option,)), option)
    plan = TypePlan(price.gpu_type, option, r, dict(by_option or {option: r}), sc.shape[1], float(c.cost.mean()),
                    (float(np.quantile(c.cost, 0.05)), float(np.quantile(c.cost, 0.95))),
                    float(c.on_demand_hours.mean()), float(c.spot_hours.mean()), float(c.short_share.mean()),
                    float(c.unmet_hours.mean()), rate / price.on_demand, float(od_all.cost.mean()),
                    float(od_all.cost.mean() - c.cost.mean()), c.cost)
    if history is not None:
        rb = backward_rule(price, history, option)
        cb = charge(price, rb, sc, settings, option)
        plan.backward_reserved = rb
        plan.savings_vs_backward = float(cb.cost.mean() - c.cost.mean())
    return plan


def backward_rule(price: GpuPrice, usage: np.ndarray, option: str | None = None, days: int = 30) -> int:
    """The cloud providers' rule: reserve the count that would have maximised savings over the last ``days``
    of hourly usage (= the (1 - c_reserved / c_on_demand) quantile of past hourly usage)."""
    u = np.asarray(usage, dtype=float)
    u = u[np.isfinite(u)][-days * 24:]
    if len(u) == 0:
        return 0
    rate = price.reserved[option] if option else price.cheapest_reserved()[1]
    best, best_s = 0, 0.0
    for r in range(0, int(np.ceil(u.max())) + 1):
        s = float(np.sum(np.minimum(u, r)) * price.on_demand - r * rate * len(u))
        if s > best_s + 1e-9:
            best, best_s = r, s
    return best


def newsvendor(price: GpuPrice, scenarios: np.ndarray, option: str) -> float:
    """Closed form for one type, no spot, no cap: the (1 - c_r / c_od) quantile of pooled hourly demand."""
    q = 1 - price.reserved[option] / price.on_demand
    return float(np.quantile(np.asarray(scenarios, dtype=float).ravel(), q, method="inverted_cdf"))
