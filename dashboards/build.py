"""Build every dashboard to Grafana JSON, deterministically (building twice gives identical files)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpufleet.dashboards import allocator, capacity, fleet, gpu, health, processes, selfmon
from gpufleet.dashboards.panels import Q
from gpufleet.exporter.errors import ConfigError
from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

SCHEMA_VERSION = 39  # Grafana 11's dashboard model; grafanalib writes 12, which Grafana must migrate

BUILDERS: dict[str, Callable[[Q], g.Dashboard]] = {
    "fleet": fleet.build,
    "gpu": gpu.build,
    "health": health.build,
    "processes": processes.build,
    "capacity": capacity.build,
    "allocator": allocator.build,
    "self": selfmon.build,
}


def _normalise(model: dict[str, Any], mode: str) -> dict[str, Any]:
    """Set the schema version, stable ids and uids, drop grafanalib's legacy keys."""
    model = json.loads(json.dumps(model, cls=DashboardEncoder))
    model["schemaVersion"] = SCHEMA_VERSION
    model["id"] = None
    model["version"] = 1
    model.pop("rows", None)
    model.pop("__inputs", None)
    if mode != "native":
        model["uid"] = f"{model['uid']}-{mode}"[:40]
        model["title"] = f"{model['title']} ({mode} names)"
    for i, panel in enumerate(model["panels"], start=1):
        panel["id"] = i
    return model


def build_all(names: str = "native") -> dict[str, dict[str, Any]]:
    """Every dashboard as a Grafana JSON model, keyed by short name."""
    if names not in ("native", "dcgm"):
        raise ConfigError(f"--names must be native or dcgm, got {names!r}")
    q = Q(names)
    return {key: _normalise(build(q).to_json_data(), names) for key, build in BUILDERS.items()}


def dumps(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def write_all(out: Path, names: str = "native") -> list[Path]:
    """Write ``<out>/dashboards/gpufleet-<name>.json`` plus Grafana provisioning files; return the paths."""
    from gpufleet.dashboards.provision import write_provisioning

    dash_dir = out / "dashboards"
    dash_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, model in build_all(names).items():
        path = dash_dir / f"gpufleet-{key}.json"
        path.write_text(dumps(model), encoding="utf-8")
        paths.append(path)
    paths += write_provisioning(out)
    return paths
