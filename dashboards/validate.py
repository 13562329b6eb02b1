"""Static checks on built dashboards: a valid Grafana model and metric names the catalogue knows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from gpufleet.exporter.catalogue import Catalogue, catalogue

# Series Prometheus itself creates (not exporter metrics) that a dashboard may read.
PROMETHEUS_BUILTINS = {"ALERTS", "ALERTS_FOR_STATE", "up"}
_FUNCS = {"sum", "avg", "max", "min", "count", "rate", "increase", "topk", "bottomk", "by", "without",
          "vector", "time", "label_values", "ignoring", "group_left", "on", "or", "and", "unless",
          "histogram_quantile", "clamp_min", "clamp_max", "abs", "deriv", "delta", "irate", "avg_over_time",
          "max_over_time", "min_over_time", "quantile", "stddev", "offset", "bool", "sort", "sort_desc"}
_IDENT = re.compile(r"(?<![\w$\"{.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(?=[{\[(\s)]|$)")


def queries(model: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) for every panel target and query variable of a dashboard model."""
    for panel in model.get("panels", []):
        for t in panel.get("targets", []) or []:
            if t.get("expr"):
                yield f"panel {panel.get('title')!r} ({t.get('refId')})", t["expr"]
    for var in model.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            yield f"variable ${var['name']}", var["query"]


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (identifiers that are not functions, labels or keywords)."""
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    no_labels = re.sub(r"\{[^}]*\}", "{}", no_strings)
    no_by = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", no_labels)
    no_range = re.sub(r"\[[^\]]*\]", "[]", no_by)
    if no_range.startswith("label_values("):
        inner = no_range[len("label_values("):].rsplit(",", 1)[0]
        no_range = inner
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", no_range):
        word = m.group(0)
        if word in _FUNCS or word.startswith("$"):
            continue
        names.add(word)
    return names


def check_model(model: dict[str, Any], cat: Catalogue | None = None) -> list[str]:
    """Problems with one dashboard model; empty when it is valid."""
    cat = cat or catalogue()
    problems: list[str] = []
    title = model.get("title", "?")
    ids = [p.get("id") for p in model["panels"]]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"{title}: panel ids are not unique")
    cells: dict[tuple[int, int], str] = {}
    for p in model["panels"]:
        gp = p["gridPos"]
        if gp["x"] + gp["w"] > 24:
            problems.append(f"{title}: panel {p['title']!r} is wider than the grid")
        for x in range(gp["x"], gp["x"] + gp["w"]):
            for y in range(gp["y"], gp["y"] + gp["h"]):
                if (x, y) in cells:
                    problems.append(f"{title}: panels {cells[(x, y)]!r} and {p['title']!r} overlap")
                    break
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            continue
        if not p.get("description"):
            problems.append(f"{title}: panel {p['title']!r} has no description")
        unit = (p.get("fieldConfig", {}).get("defaults", {}).get("unit") or p.get("format")
                or p.get("yAxis", {}).get("format") or (p.get("yaxes") or [{}])[0].get("format"))
        if not unit:
            problems.append(f"{title}: panel {p['title']!r} has no unit")
        ds = p.get("datasource") or {}
        if ds.get("uid") != "${datasource}":
            problems.append(f"{title}: panel {p['title']!r} does not use the $datasource variable")
        for t in p.get("targets", []):
            if (t.get("datasource") or {}).get("uid") != "${datasource}":
                problems.append(f"{title}: a target of {p['title']!r} does not use the $datasource variable")
    known = cat.names("both") | PROMETHEUS_BUILTINS
    for where, expr in queries(model):
        unknown = metric_names(expr) - known
        if unknown:
            problems.append(f"{title}: {where} names metrics not in the catalogue: {sorted(unknown)} in {expr!r}")
    return problems
