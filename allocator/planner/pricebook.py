"""The price book: USD per GPU-hour for on-demand, reserved (1y/3y x no/partial/all upfront) and spot.

The default (``pricebook.yaml`` beside this file) documents where each figure comes from; a user file with
the same layout overrides it key by key (:func:`load`).  :func:`derive_spot` recomputes the spot discount
and interruption figures from ``../shared/data/aws-spot-advisor-2025`` so a test can check the YAML.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from gpufleet.exporter.errors import InputError

DEFAULT_PATH = Path(__file__).with_name("pricebook.yaml")
OPTIONS = ("1y_no_upfront", "1y_partial_upfront", "1y_all_upfront", "3y_no_upfront", "3y_partial_upfront",
           "3y_all_upfront")
BUCKET_MIDPOINT = {0: 0.025, 1: 0.075, 2: 0.125, 3: 0.175, 4: 0.25}
HOURS_PER_MONTH = 730.0
VENDOR_PREFIXES = ("NVIDIA ", "Tesla ")


@dataclass(frozen=True)
class GpuPrice:
    """Prices of one GPU type, per GPU-hour."""

    gpu_type: str
    instance: str
    on_demand: float
    reserved: dict[str, float]          # option -> effective hourly price
    spot_discount: float                # share off on-demand
    interruption_monthly: float         # share of spot instances interrupted per month
    checkpoint_hours: float = 1.0
    restart_hours: float = 0.1
    models: tuple[str, ...] = ()        # exact GPU model names (as NVML / the twin report them) of this type

    @property
    def spot(self) -> float:
        return self.on_demand * (1 - self.spot_discount)

    @property
    def interruption_hourly(self) -> float:
        return -math.log(max(1e-12, 1 - self.interruption_monthly)) / HOURS_PER_MONTH

    @property
    def spot_redo_factor(self) -> float:
        """Spot GPU-hours billed per GPU-hour of useful work: lost work (half a checkpoint interval) and the
        restart are redone after every interruption."""
        lost = self.interruption_hourly * (self.checkpoint_hours / 2 + self.restart_hours)
        return 1 / max(1e-6, 1 - lost)

    @property
    def spot_effective(self) -> float:
        return self.spot * self.spot_redo_factor

    def cheapest_reserved(self, allowed: tuple[str, ...] | None = None) -> tuple[str, float]:
        opts = {k: v for k, v in self.reserved.items() if allowed is None or k in allowed}
        if not opts:
            raise InputError(f"{self.gpu_type}: no reserved option among {allowed}")
        k = min(opts, key=lambda o: opts[o])
        return k, opts[k]


@dataclass(frozen=True)
class PriceBook:
    currency: str
    gpus: dict[str, GpuPrice]
    source: str

    def __getitem__(self, gpu_type: str) -> GpuPrice:
        try:
            return self.gpus[gpu_type]
        except KeyError:
            raise InputError(f"no price for GPU type {gpu_type!r} (have {', '.join(sorted(self.gpus))})",
                             path=self.source) from None

    def type_of(self, model: str) -> str:
        """The price-book type of a GPU model name, by exact match: the type's own name or one of its
        ``models`` (a leading ``NVIDIA `` / ``Tesla `` vendor prefix is ignored).  Never a substring guess:
        an unknown model raises :class:`InputError` saying how to add it."""
        names = {model, *(model[len(p):] for p in VENDOR_PREFIXES if model.startswith(p))}
        hits = sorted({t for t, g in self.gpus.items() if names & {t, *g.models}})
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise InputError(f"GPU model {model!r} is listed under several price-book types ({', '.join(hits)})",
                             path=self.source)
        raise InputError(f"GPU model {model!r} is not in the price book (types: {', '.join(sorted(self.gpus))}); "
                         f"add it to the 'models' list of its type in a --prices file", path=self.source)

    def types_of(self, models: Iterable[str]) -> dict[str, str]:
        """``{model: type}`` for every model; every unknown model is named in one error."""
        out: dict[str, str] = {}
        bad: list[str] = []
        for m in sorted(set(models)):
            try:
                out[m] = self.type_of(m)
            except InputError as exc:
                bad.append(exc.reason)
        if bad:
            raise InputError("; ".join(bad), path=self.source)
        return out


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read price book: {exc}", path=str(path)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"bad YAML: {getattr(exc, 'problem', exc)}", path=str(path),
                         line=mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict):
        raise InputError("a price book is a mapping", path=str(path))
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(path: str | Path | None = None) -> PriceBook:
    """The default price book, overridden key by key by ``path`` when given."""
    data = _read(DEFAULT_PATH)
    source = str(DEFAULT_PATH)
    if path is not None:
        data = _merge(data, _read(Path(path)))
        source = str(path)
    fractions = data.get("reserved_fraction", {})
    spot = data.get("spot", {}) or {}
    gpus: dict[str, GpuPrice] = {}
    for name, g in (data.get("gpus") or {}).items():
        if not isinstance(g, dict):
            raise InputError(f"gpus.{name} must be a mapping", path=source)
        try:
            od = float(g["on_demand"])
            frac = {**fractions, **(g.get("reserved_fraction") or {})}
            reserved = {o: od * float(frac[o]) for o in OPTIONS if o in frac}
            reserved.update({o: float(v) for o, v in (g.get("reserved") or {}).items()})
            price = GpuPrice(str(name), str(g.get("instance", "")), od, reserved, float(g.get("spot_discount", 0.0)),
                             float(g.get("interruption_monthly", 0.0)),
                             float(g.get("checkpoint_hours", spot.get("checkpoint_hours", 1.0))),
                             float(g.get("restart_hours", spot.get("restart_hours", 0.1))),
                             tuple(str(m) for m in (g.get("models") or ())))
        except KeyError as exc:
            raise InputError(f"gpus.{name}: missing {exc.args[0]!r}", path=source) from exc
        except (TypeError, ValueError) as exc:
            raise InputError(f"gpus.{name}: {exc}", path=source) from exc
        if od <= 0 or not 0 <= price.spot_discount < 1 or not 0 <= price.interruption_monthly < 1:
            raise InputError(f"gpus.{name}: on_demand > 0, 0 <= spot_discount < 1, 0 <= interruption < 1",
                             path=source)
        gpus[str(name)] = price
    if not gpus:
        raise InputError("the price book lists no GPU types", path=source)
    return PriceBook(str(data.get("currency", "USD")), gpus, source)


def derive_spot(advisor_csv: str | Path, instance: str) -> tuple[float, float]:
    """(median savings share, midpoint of the median interruption bucket) over regions, Linux, for one
    instance type from the Spot Advisor flat CSV."""
    import pandas as pd

    d = pd.read_csv(advisor_csv)
    d = d[(d["os"] == "Linux") & (d["instance_type"] == instance)]
    if d.empty:
        raise InputError(f"no Spot Advisor rows for {instance}", path=str(advisor_csv))
    bucket = float(d["interruption_bucket_index"].median())
    lo, hi = BUCKET_MIDPOINT[math.floor(bucket)], BUCKET_MIDPOINT[math.ceil(bucket)]
    return float(d["savings_vs_ondemand_pct"].median()) / 100, (lo + hi) / 2
