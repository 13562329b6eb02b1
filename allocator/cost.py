"""Cost attribution: GPU-hours by user, team and job, priced with the planner's price book.

Input is the queue's usage log (:class:`allocator.queue.Usage`: who held how many GPUs of which type from
when to when). Prices are USD (or the book's currency) per GPU-hour from
:mod:`allocator.planner.pricebook`; ``basis`` picks the on-demand price (default), a reserved option
(e.g. ``1y_no_upfront``) or ``spot``. A GPU type missing from the book takes ``default_price`` when given,
else it is an error naming the type. The monthly table splits every usage stretch at calendar-month
boundaries (UTC).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gpufleet.allocator.queue import Usage
from gpufleet.exporter.errors import InputError


@dataclass(frozen=True)
class Prices:
    """Price per GPU-hour by GPU type, and the currency."""

    per_gpu_hour: Mapping[str, float]
    currency: str = "USD"
    default_price: float | None = None

    def of(self, gpu_type: str) -> float:
        if gpu_type in self.per_gpu_hour:
            return float(self.per_gpu_hour[gpu_type])
        if self.default_price is not None:
            return self.default_price
        raise InputError(f"no price for GPU type {gpu_type!r} (have {', '.join(sorted(self.per_gpu_hour))}); "
                         "add it to the price book or give a default price")


def prices_from_book(path: str | Path | None = None, basis: str = "on_demand",
                     default_price: float | None = None) -> Prices:
    """Prices from the planner's price book (``None``: the shipped default book)."""
    from gpufleet.allocator.planner import pricebook

    book = pricebook.load(path)
    out: dict[str, float] = {}
    for name, gp in book.gpus.items():
        if basis == "on_demand":
            out[name] = gp.on_demand
        elif basis == "spot":
            out[name] = gp.spot
        elif basis in gp.reserved:
            out[name] = gp.reserved[basis]
        else:
            raise InputError(f"unknown price basis {basis!r}; use on_demand, spot or one of "
                             f"{', '.join(sorted(gp.reserved))}")
    return Prices(out, book.currency, default_price)


@dataclass(frozen=True)
class CostRow:
    key: str
    gpu_hours: float
    cost: float


def attribute(usage: Iterable[Usage], prices: Prices, by: str = "team") -> list[CostRow]:
    """GPU-hours and cost grouped by ``user``, ``team``, ``job`` or ``gpu_type``, most expensive first."""
    if by not in ("user", "team", "job", "gpu_type"):
        raise InputError(f"cannot group cost by {by!r}")
    hours: dict[str, float] = {}
    cost: dict[str, float] = {}
    for u in usage:
        k = getattr(u, by)
        hours[k] = hours.get(k, 0.0) + u.gpu_hours
        cost[k] = cost.get(k, 0.0) + u.gpu_hours * prices.of(u.gpu_type)
    return sorted((CostRow(k, hours[k], cost[k]) for k in hours), key=lambda r: (-r.cost, r.key))


def _month_edges(start: float, end: float) -> list[tuple[str, float, float]]:
    out = []
    t = start
    while t < end:
        d = datetime.fromtimestamp(t, tz=UTC)
        nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=UTC).timestamp()
        out.append((f"{d.year:04d}-{d.month:02d}", t, min(end, nxt)))
        t = nxt
    return out


@dataclass(frozen=True)
class MonthRow:
    month: str
    team: str
    user: str
    gpu_type: str
    gpu_hours: float
    cost: float


def monthly(usage: Iterable[Usage], prices: Prices) -> list[MonthRow]:
    """Cost per (month, team, user, GPU type), months split at UTC month boundaries."""
    acc: dict[tuple[str, str, str, str], float] = {}
    for u in usage:
        for month, a, b in _month_edges(u.start, u.end):
            k = (month, u.team, u.user, u.gpu_type)
            acc[k] = acc.get(k, 0.0) + u.gpus * (b - a) / 3600.0
    return [MonthRow(m, t, us, g, h, h * prices.of(g)) for (m, t, us, g), h in sorted(acc.items())]


def write_monthly_csv(rows: list[MonthRow], path: Path, currency: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["month", "team", "user", "gpu_type", "gpu_hours", f"cost_{currency.lower()}"])
        for r in rows:
            w.writerow([r.month, r.team, r.user, r.gpu_type, f"{r.gpu_hours:.3f}", f"{r.cost:.2f}"])
