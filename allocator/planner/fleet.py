"""The capacity plan for a whole fleet: one reservation per GPU type, all types optimised together.

Demand comes in *classes*: the GPUs requested by jobs that may run on the same set of GPU types (a job
that names no type may run on every type of the fleet).  A class allowed on several types is demand any
of them may serve.  Given S forecast scenarios of each class's hourly demand over T hours, one mixed-integer
programme (scipy's ``milp``, HiGHS) picks the integer reservation ``R_t`` of every type and, in every
sampled scenario-hour, how each class's demand is served: by reserved GPUs of an allowed type (at most
``R_t`` over all classes), on spot (up to ``spot_share`` of the work above the reservation, when spot with
redone work is cheaper), on demand (up to ``on_demand_cap`` GPUs per type), or not at all (priced at
``unmet_penalty`` per GPU-hour).  Shared constraints: a budget on the reserved spend over the window and a
service level (expected unmet GPU-hours over the window, all types together).

Reservations commit for a term; the only evidence that demand lasts is its history, so a term needs a
minimum history (:data:`TERM_MIN_HISTORY_DAYS`) and :func:`options_for_history` refuses longer terms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from gpufleet.allocator.planner.optimize import PlanSettings, TypePlan, summarise
from gpufleet.allocator.planner.pricebook import OPTIONS, GpuPrice, PriceBook
from gpufleet.exporter.errors import InputError

TERM_MIN_HISTORY_DAYS: dict[str, float] = {"1y": 14.0, "3y": 28.0}
"""Days of demand history a reservation term needs: two weekly cycles for one year, four for three."""
MIN_FORECAST_HISTORY_DAYS = 3.0
ANY = "*"


class InsufficientHistory(InputError):
    """Too little demand history for the reservation asked for."""


def term_of(option: str) -> str:
    return option.split("_", 1)[0]


def options_for_history(history_days: float, allowed: Sequence[str] = OPTIONS, explicit: bool = False,
                        min_days: Mapping[str, float] = TERM_MIN_HISTORY_DAYS) -> tuple[str, ...]:
    """The reserved options ``history_days`` of demand history supports.  Options with a longer term are
    dropped, or refused when the user asked for them (``explicit``); with too little history for any term
    :class:`InsufficientHistory` says how much is needed."""
    ok = tuple(o for o in allowed if history_days >= min_days.get(term_of(o), float("inf")))
    refused = [o for o in allowed if o not in ok]
    need = ", ".join(f"a {t[:-1]}-year term needs at least {d:g} days" for t, d in sorted(min_days.items()))
    if not ok or (explicit and refused):
        raise InsufficientHistory(
            f"{history_days:.1f} days of demand history cannot support {', '.join(refused)} reservations "
            f"({need}); collect more history or plan shorter terms / on-demand only")
    return ok


def history_days(values: np.ndarray, step_h: float = 1.0) -> float:
    """Days of history: the span of observed (finite) values."""
    v = np.asarray(values, dtype=float)
    idx = np.flatnonzero(np.isfinite(v))
    return 0.0 if len(idx) == 0 else float((idx[-1] - idx[0] + 1) * step_h / 24.0)


@dataclass(frozen=True)
class DemandClass:
    """Demand of the jobs allowed on ``types`` (price-book types): scenarios (S, T) of GPUs per hour."""

    name: str
    types: tuple[str, ...]
    scenarios: np.ndarray = field(repr=False)
    history: np.ndarray | None = field(default=None, repr=False)


@dataclass
class FleetPlan:
    by_type: dict[str, TypePlan]           # per-type figures at the chosen reservation (its share of demand)
    reserved: dict[str, int]
    option: dict[str, str]
    expected_cost: float                   # scenario-average cost of the whole fleet over the window
    reserved_spend: float
    budget: float | None
    budget_binding: bool
    expected_unmet_hours: float
    served: dict[str, dict[str, float]]    # class -> type -> expected GPU-hours served there
    type_paths: dict[str, np.ndarray] = field(repr=False)   # type -> (S, T) demand assigned to it
    status: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"by_type": {t: {"reserved": p.reserved, "term": p.option, "expected_cost": p.expected_cost,
                                "cost_interval90": list(p.cost_interval90), "shortfall_probability": p.shortfall_prob,
                                "expected_on_demand_gpu_hours": p.expected_on_demand_hours}
                            for t, p in self.by_type.items()},
                "expected_cost": self.expected_cost, "reserved_spend": self.reserved_spend, "budget": self.budget,
                "budget_binding": self.budget_binding, "expected_unmet_gpu_hours": self.expected_unmet_hours,
                "served_gpu_hours": self.served}


def _points(classes: Sequence[DemandClass], max_points: int, seed: int) -> tuple[np.ndarray, int, int]:
    """Scenario-hours as (K, C) demand points (the same (scenario, hour) across classes), S and T."""
    shapes = {np.atleast_2d(c.scenarios).shape for c in classes}
    if len(shapes) != 1:
        raise InputError(f"every demand class needs scenarios of one shape (got {sorted(shapes)})")
    s, t = shapes.pop()
    d = np.stack([np.nan_to_num(np.atleast_2d(c.scenarios).astype(float), nan=0.0).clip(min=0).ravel()
                  for c in classes], axis=1)
    if len(d) > max_points:
        d = d[np.sort(np.random.default_rng(seed).choice(len(d), max_points, replace=False))]
    return d, s, t


def plan_fleet(book: PriceBook, classes: Sequence[DemandClass], settings: PlanSettings | None = None,
               budget: float | None = None, unmet_penalty: float | None = None, max_points: int = 1500,
               seed: int = 0) -> FleetPlan:
    """Reserve per GPU type for ``classes`` of demand, all types together (see the module docstring).

    ``budget``: the most the reservations may cost over the window (all types); ``settings.max_unmet_gpu_hours``
    the shared service level.  ``settings.max_shortfall_prob`` (a share of hours) is a single-type measure and
    is refused here."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    settings = settings or PlanSettings()
    if settings.max_shortfall_prob is not None:
        raise InputError("a fleet plan takes its service level as max_unmet_gpu_hours (expected unmet GPU-hours "
                         "over the window, all types together), not max_shortfall_prob")
    if not classes:
        raise InputError("no demand to plan for")
    types = sorted({t for c in classes for t in c.types})
    prices: dict[str, GpuPrice] = {t: book[t] for t in types}
    opt = {t: prices[t].cheapest_reserved(settings.allowed_options) for t in types}
    d, _s, hours = _points(classes, max_points, seed)
    k, n_c = d.shape
    w = hours / k                          # hours of the window one point stands for
    penalty = unmet_penalty if unmet_penalty is not None else 10 * max(p.on_demand for p in prices.values())
    use_spot = {t: settings.spot_share > 0 and prices[t].spot_effective < prices[t].on_demand for t in types}
    spot_k = settings.spot_share * settings.spot_availability

    # variables: R_t (integer), then per point k: x[c,t] reserved, y[c,t] on demand, z[c,t] spot, u[c] unmet
    pairs = [(ci, t) for ci, c in enumerate(classes) for t in dict.fromkeys(c.types)]
    n_p = len(pairs)
    per_k = 3 * n_p + n_c
    n = len(types) + k * per_k
    ti = {t: i for i, t in enumerate(types)}

    def var(kind: int, j: int) -> np.ndarray:   # index of variable kind (0 x, 1 y, 2 z) for pair j, all points
        return len(types) + np.arange(k) * per_k + kind * n_p + j

    def unmet(ci: int) -> np.ndarray:
        return len(types) + np.arange(k) * per_k + 3 * n_p + ci

    cost = np.zeros(n)
    upper = np.full(n, np.inf)
    for t in types:
        cost[ti[t]] = opt[t][1] * hours
        upper[ti[t]] = float(np.ceil(d[:, [ci for ci, c in enumerate(classes) if t in c.types]].sum(axis=1).max()))
    for j, (_ci, t) in enumerate(pairs):
        cost[var(1, j)] = w * prices[t].on_demand
        cost[var(2, j)] = w * prices[t].spot * prices[t].spot_redo_factor
        if not use_spot[t]:
            upper[var(2, j)] = 0.0
    for ci in range(n_c):
        cost[unmet(ci)] = w * penalty
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    lo: list[np.ndarray] = []
    hi: list[np.ndarray] = []
    row = 0

    def block(entries: list[tuple[np.ndarray, float]], lb: np.ndarray, ub: np.ndarray) -> None:
        nonlocal row
        r = row + np.arange(len(lb))
        for idx, coef in entries:
            idx = np.broadcast_to(idx, r.shape)
            rows.append(r)
            cols.append(idx)
            vals.append(np.full(len(r), coef))
        lo.append(lb)
        hi.append(ub)
        row += len(lb)

    for t in types:                                   # reserved GPUs used <= R_t, every point
        js = [j for j, (_c, tt) in enumerate(pairs) if tt == t]
        block([(var(0, j), 1.0) for j in js] + [(np.full(k, ti[t]), -1.0)], np.full(k, -np.inf), np.zeros(k))
        if settings.on_demand_cap is not None:      # on-demand quota per type
            block([(var(1, j), 1.0) for j in js], np.full(k, -np.inf), np.full(k, settings.on_demand_cap))
    for ci in range(n_c):                             # every class's demand is served or unmet
        js = [j for j, (c, _t) in enumerate(pairs) if c == ci]
        block([(var(m, j), 1.0) for j in js for m in range(3)] + [(unmet(ci), 1.0)], d[:, ci], d[:, ci])
        if any(use_spot.values()):                    # spot work <= spot_share x (demand above the reservation)
            block([(var(2, j), 1.0) for j in js] + [(var(0, j), spot_k) for j in js], np.full(k, -np.inf),
                  spot_k * d[:, ci])
    if budget is not None:
        block([(np.array([ti[t]]), opt[t][1] * hours) for t in types], np.array([-np.inf]), np.array([budget]))
    if settings.max_unmet_gpu_hours is not None:
        block([(np.array([i]), w) for ci in range(n_c) for i in unmet(ci)], np.array([-np.inf]),
              np.array([settings.max_unmet_gpu_hours]))
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(row, n)).tocsr()
    integrality = np.zeros(n)
    integrality[:len(types)] = 1
    res = milp(cost, constraints=LinearConstraint(a, np.concatenate(lo), np.concatenate(hi)),
               integrality=integrality, bounds=Bounds(np.zeros(n), upper),
               options={"time_limit": 120.0, "mip_rel_gap": 1e-4})
    if res.x is None:
        raise InputError(f"no capacity plan meets the constraints ({res.message.strip()}): raise the budget or "
                         "the on-demand cap, or relax the service level")
    x = res.x
    reserved = {t: round(float(x[ti[t]])) for t in types}
    spend = float(sum(reserved[t] * opt[t][1] * hours for t in types))
    served: dict[str, dict[str, float]] = {c.name: {} for c in classes}
    share = np.zeros((n_c, len(types)))
    for j, (ci, t) in enumerate(pairs):
        g = float(sum(x[var(m, j)].sum() for m in range(3)) * w)
        served[classes[ci].name][t] = g
        share[ci, ti[t]] = g
    share = share / np.maximum(share.sum(axis=1, keepdims=True), 1e-12)
    for ci, c in enumerate(classes):                  # nothing served (no demand): split evenly
        if share[ci].sum() == 0:
            share[ci, [ti[t] for t in c.types]] = 1 / len(c.types)
    type_paths: dict[str, np.ndarray] = {}
    for t in types:
        type_paths[t] = sum((share[ci, ti[t]] * np.nan_to_num(np.atleast_2d(c.scenarios).astype(float), nan=0.0)
                             for ci, c in enumerate(classes)), np.zeros((_s, hours)))
    by_type = {}
    for t in types:
        hist = [(share[ci, ti[t]], np.asarray(c.history, dtype=float)) for ci, c in enumerate(classes)
                if c.history is not None and share[ci, ti[t]] > 0]
        h = None
        if hist and len({len(v) for _, v in hist}) == 1:
            h = sum((f * np.nan_to_num(v) for f, v in hist), np.zeros(len(hist[0][1])))
        by_type[t] = summarise(prices[t], reserved[t], type_paths[t], settings, opt[t][0], h)
    unmet_h = float(sum(x[unmet(ci)].sum() for ci in range(n_c)) * w)
    return FleetPlan(by_type, reserved, {t: opt[t][0] for t in types}, float(res.fun), spend, budget,
                     budget is not None and spend >= budget * (1 - 1e-6) - max(opt[t][1] * hours for t in types),
                     unmet_h, served, type_paths, str(res.message))


def class_key(types: Iterable[str]) -> str:
    return "|".join(sorted(set(types)))


def job_demand(records: Iterable[Any], type_of_model: Mapping[str, str], fleet_types: Sequence[str],
               start: float, end: float, step_s: float = 3600.0) -> dict[str, np.ndarray]:
    """Hourly GPUs requested (queued or running) per demand class, from job records (``spec.gpu_types``,
    ``spec.gpu_count``, ``submitted``, ``finished``): ``{class_key: values over [start, end)}``.  A job that
    names no GPU model may run on every type of the fleet; a model the price book does not know raises."""
    n = max(0, round((end - start) / step_s))
    edges = start + step_s * np.arange(n + 1)
    out: dict[str, np.ndarray] = {}
    for r in records:
        spec = r.spec
        types = [type_of_model[m] for m in spec.gpu_types] if spec.gpu_types else list(fleet_types)
        if not types:
            continue
        a, b = float(r.submitted), float(r.finished if r.finished is not None else end)
        if b <= start or a >= end or n == 0:
            continue
        lo_e, hi_e = np.maximum(edges[:-1], a), np.minimum(edges[1:], b)
        cover = np.clip(hi_e - lo_e, 0, None) / step_s
        key = class_key(types)
        out[key] = out.get(key, np.zeros(n)) + cover * float(spec.gpu_count)
    return out


def fleet_types(book: PriceBook, models: Iterable[str]) -> dict[str, str]:
    """``{model: price-book type}`` of the fleet's GPU models, by exact name (see :meth:`PriceBook.type_of`)."""
    return book.types_of(models)


def plan_service(book: PriceBook, device_models: Sequence[str], records: Iterable[Any], total: Any, now: float,
                 model: str = "combo", horizon_h: int = 7 * 24, n: int = 200, seed: int = 0,
                 settings: PlanSettings | None = None) -> dict[str, Any]:
    """The capacity plan ``serve`` publishes: per GPU type of the fleet (exact model names), from the demand
    of the jobs allowed on each type (``records``: the queue's job records) over the hourly ``total`` demand
    series' window; all types optimised together.  With too little history for any reservation term every
    type is planned on demand (reserved 0) and the plan says why."""
    import pandas as pd
    from gpufleet.allocator.planner.evaluate import forecast_paths

    settings = settings or PlanSettings()
    tmap = fleet_types(book, device_models)
    types = sorted(set(tmap.values()))
    if not types:
        raise InputError("the fleet has no GPUs to plan for")
    installed = {t: sum(1 for m in device_models if tmap[m] == t) for t in types}
    series = total.astype(float)
    days = history_days(series.to_numpy())
    base: dict[str, Any] = {"history_days": round(days, 2), "installed": installed}
    try:
        allowed = options_for_history(days, settings.allowed_options)
    except InsufficientHistory as exc:
        return {"generated_at": now, "recommendation": {**base, "note": exc.reason, "by_type": {
            t: {"reserved": 0, "term": "none", "expected_cost": None, "cost_interval90": None,
                "shortfall_probability": None} for t in types}}}
    start = float(series.index[0].timestamp()) if series.index.tz is not None else \
        float(pd.Timestamp(series.index[0], tz="UTC").timestamp())
    demand = job_demand(list(records), tmap, types, start, start + len(series) * 3600.0)
    if not demand or sum(v.sum() for v in demand.values()) <= 0:
        demand = {class_key(types): np.nan_to_num(series.to_numpy())}  # untyped demand: any type may serve it
    classes = []
    for key, values in sorted(demand.items()):
        hist = pd.Series(values, index=series.index)
        paths, _ = forecast_paths(hist, model, horizon_h, n, seed)
        classes.append(DemandClass(key, tuple(key.split("|")), np.clip(paths, 0, None), values))
    plan = plan_fleet(book, classes, replace(settings, allowed_options=allowed))
    return {"generated_at": now, "recommendation": {**base, **plan.to_dict(), "classes": sorted(demand)}}
