"""What the fleet, GPU and capacity pages show: filters, health classes, and small server-side SVG
charts (no chart library, no script: a polyline per series)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

log = logging.getLogger("gpufleet.console")
HEALTHS = ("ok", "cordoned", "draining", "lost", "unknown")
RISK_LEVELS = (0.0, 0.05, 0.2, 0.5)
CHART_FIELDS = (("temperature_gpu", "temperature", "°C", 1.0), ("util_gpu", "utilisation", "%", 100.0),
                ("power_usage", "power", "W", 1.0), ("fb_used", "memory used", "GiB", 1 / 2**30))
HISTORY_S = 3 * 3600


@dataclass
class Filters:
    node: str = ""
    model: str = ""
    health: str = ""
    risk: float = 0.0


def health_of(g: dict[str, Any]) -> str:
    """ok / cordoned / draining / lost / unknown: the device's health first, then the operator's override."""
    h = g.get("health") or "ok"
    if h != "ok":
        return h if h in HEALTHS else "unknown"
    state = g.get("state") or "ok"
    return state if state in HEALTHS else "ok"


def risk_of(g: dict[str, Any]) -> float:
    return max(g.get("risk", {}).values(), default=0.0)


def risk_class(p: float) -> str:
    return "r3" if p >= 0.5 else "r2" if p >= 0.2 else "r1" if p >= 0.05 else "r0"


def decorate(g: dict[str, Any]) -> dict[str, Any]:
    mem_t = g.get("memory_total_bytes") or 0
    mem_u = g.get("memory_used_bytes")
    return {**g, "h": health_of(g), "p": risk_of(g), "rc": risk_class(risk_of(g)),
            "util_pct": None if g.get("utilization") is None else round(100 * g["utilization"]),
            "mem_pct": None if mem_u is None or not mem_t else round(100 * mem_u / mem_t),
            "mem_w": None if mem_u is None or not mem_t else min(10, max(0, round(10 * mem_u / mem_t))),
            "temp": None if g.get("temperature_celsius") is None else round(g["temperature_celsius"]),
            "power": None if g.get("power_watts") is None else round(g["power_watts"])}


def build(gpus: list[dict[str, Any]], f: Filters) -> dict[str, Any]:
    """The fleet page's data: counts, filter choices and the matching GPUs grouped by node."""
    all_g = [decorate(g) for g in gpus]
    counts = {h: 0 for h in HEALTHS}
    for g in all_g:
        counts[g["h"]] += 1
    shown = [g for g in all_g
             if (not f.node or f.node in g["node"]) and (not f.model or g["model"] == f.model)
             and (not f.health or g["h"] == f.health) and g["p"] >= f.risk]
    nodes: dict[str, list[dict[str, Any]]] = {}
    for g in shown:
        nodes.setdefault(g["node"], []).append(g)
    return {"nodes": nodes, "counts": counts, "total": len(all_g), "shown": len(shown),
            "models": sorted({g["model"] for g in all_g}), "healths": HEALTHS, "risk_levels": RISK_LEVELS,
            "f": f, "at_risk": sorted((g for g in all_g if g["p"] >= 0.2), key=lambda g: -g["p"])[:10]}


def sparkline(ts: list[float], values: list[float], unit: str, width: int = 280, height: int = 60) -> Markup:
    """A small SVG line chart (min / max labelled) with every number escaped."""
    pts = [(t, v) for t, v in zip(ts, values, strict=True) if v is not None and math.isfinite(v)]
    if len(pts) < 2:
        return Markup('<svg class="spark" viewBox="0 0 %d %d" role="img" aria-label="no data"><text x="4" y="%d" '
                      'class="spark-label">no data</text></svg>') % (width, height, height // 2)
    t0, t1 = pts[0][0], pts[-1][0]
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0
    pad, top = 4, 16  # the label sits above the plot area
    coords = " ".join(f"{pad + (t - t0) / span_t * (width - 2 * pad):.1f},"
                      f"{height - pad - (v - lo) / span_v * (height - top - pad):.1f}" for t, v in pts)
    label = f"{lo:.0f}–{hi:.0f} {unit}, last {pts[-1][1]:.0f}"
    return Markup('<svg class="spark" viewBox="0 0 {w} {h}" role="img" aria-label="{lab}">'
                  '<polyline class="spark-line" points="{c}"/><text x="{x}" y="12" class="spark-label">{lab}</text>'
                  '</svg>').format(w=width, h=height, c=coords, x=pad, lab=escape(label))


def _store_path(settings: dict[str, Any]) -> Path | None:
    store = settings.get("store") or {}
    if store.get("path"):
        return Path(store["path"])
    data_dir = settings.get("data_dir")
    return Path(data_dir) / "history" if data_dir else None


def history(settings: dict[str, Any], uuid: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The last hours of the GPU's main fields as charts, and its XID / ECC events, from the history store
    the service writes (none when it has no store)."""
    path = _store_path(settings)
    if path is None or not path.is_dir():
        return [], []
    try:
        from gpufleet.exporter.store.reader import StoreReader

        reader = StoreReader(path)
        _lo, hi = reader.span_ms()
        if hi is None:
            return [], []
        since = hi / 1000 - HISTORY_S
        res = reader.read([f for f, *_ in CHART_FIELDS], uuids=[uuid], since=since, step=60)
        ts = [float(t) for t in res.ts]
        charts = []
        for field, title, unit, scale in CHART_FIELDS:
            col = res.columns.get(field)
            if col is None:
                continue
            charts.append({"title": title, "svg": sparkline(ts, [float(x) * scale for x in col], unit)})
        events = [{"ts": e.ts, "kind": str(getattr(e.kind, "value", e.kind)), "code": e.code, "detail": e.detail}
                  for e in reader.events("events", since, None, None, [uuid])][-50:]
        return charts, events
    except Exception:  # a page must render even when the store cannot be read; the log says why
        log.exception("reading the history of %s for the console failed", uuid)
        return [], []


def charts(console: Any, uuid: str) -> dict[str, Any]:
    c, events = history(console.settings(), uuid)
    return {"charts": c, "events": events}


def forecast_plots(forecasts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for f in forecasts:
        q = f.get("quantiles") or {}
        median: list[float] = q.get("0.5") or q.get("p50") or next(iter(q.values()), [])
        ts = f.get("timestamps") or list(range(len(median)))
        if len(ts) != len(median):
            ts = list(range(len(median)))
        out.append({"series": f.get("series", "?"), "svg": sparkline([float(t) for t in ts], median, "GPUs"),
                    "quantiles": sorted(q)})
    return out


def parse_time(text: str) -> float | None:
    """'' -> None; unix seconds or an ISO 8601 time (UTC when no zone is given) -> unix seconds."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text!r}: give unix seconds or an ISO 8601 time like 2026-12-07T08:00") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def silenced_by(alert: dict[str, Any], silences: list[dict[str, Any]]) -> str:
    """The id of the first active silence whose matchers all match the alert's labels ('' for none)."""
    from gpufleet.alerting.silences import Matcher

    labels = {**alert.get("labels", {}), "alertname": alert.get("name", "")}
    for s in silences:
        try:
            if all(Matcher(m["name"], m["value"], m["op"]).matches(labels) for m in s.get("matchers", [])):
                return str(s["id"])
        except Exception:  # a matcher this version cannot read silences nothing here
            continue
    return ""
