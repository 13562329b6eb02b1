"""GPU detail: every catalogue field of one GPU over time, grouped by family, plus its processes,
pods and alerts. Generated from the catalogue, so a new catalogue field shows up here by itself."""

from __future__ import annotations

from gpufleet.dashboards.panels import (
    TEMPERATURE_WARN_C,
    Q,
    Row,
    dashboard,
    table,
    target,
    timeseries,
    variables,
)
from grafanalib import core as g

UID = "gpufleet-gpu"

FAMILY_TITLES = {
    "health": "Health", "clocks": "Clocks", "thermal": "Temperature and cooling", "power": "Power and energy",
    "utilization": "Utilization", "memory": "Memory", "ecc": "ECC, retired pages, row remapping",
    "throttle": "Throttling (clock events)", "pcie": "PCIe", "nvlink": "NVLink", "xgmi": "XGMI (AMD Infinity Fabric)", "xid": "XID errors",
    "mig": "MIG", "virtualization": "Virtualization", "processes": "Processes", "gpm": "Profiling (GPM)", "analytics": "Predictions",
    "allocator": "Allocation",
}

VENDOR_NAMES = {"nvidia": "NVIDIA", "amd": "AMD"}


def _expr(q: Q, field_id: str) -> str:
    m = q.metric(field_id)
    sel = q.sel(field_id, gpu=True)
    if m.type == "counter":
        return f"rate({sel}[5m])"
    return sel


def _legend(q: Q, field_id: str) -> str:
    m = q.metric(field_id)
    extra = [lb for lb in m.labels if lb not in m.dcgm_sum_labels or not q.dcgm(field_id)]
    return "/".join(["{{" + q.label(field_id, "gpu") + "}}", *("{{" + lb + "}}" for lb in extra)])


def build(q: Q) -> g.Dashboard:
    rows: list[Row] = []
    for family, title in FAMILY_TITLES.items():
        panels = []
        for m in q.cat.family(family):
            if m.scope != "device" or m.type == "info":
                continue
            unit = q.unit(m.field)
            if m.type == "counter":
                unit = {"joule": "watt", "s": "percentunit", "ns": "short"}.get(unit, "cps" if unit == "short" else unit)
            desc = m.help + (" (per-second rate over 5 minutes)" if m.type == "counter" else "")
            if len(m.vendors) == 1:  # a field only one vendor provides says so
                desc += f" ({VENDOR_NAMES.get(m.vendors[0], m.vendors[0])} only)"
            thresholds = None
            if m.field == "temperature_gpu":
                thresholds = [(None, "green"), (TEMPERATURE_WARN_C, "red")]
            panels.append(timeseries(m.help.split(" (")[0][:60] or m.name, desc,
                                     [target(_expr(q, m.field), _legend(q, m.field))], unit,
                                     thresholds=thresholds, width=8, height=7))
        if panels:
            rows.append(Row(title, panels))
    proc_sel = q.sel("process_memory", gpu=True)
    info_sel = 'gpufleet_process_info{node=~"$node",uuid=~"$gpu"}'
    rows.append(Row("Processes, pods and alerts", [
        table("Processes on this GPU", "Processes using the GPU now, with their container and pod.",
              [target(info_sel, instant=True, ref="A"), target(proc_sel, instant=True, ref="B")], "bytes",
              width=12),
        table("Alerts on this GPU", "Alerts Prometheus currently holds for this GPU (from the exported rule pack).",
              [target('ALERTS{uuid=~"$gpu"}', instant=True)], "short", width=12),
    ]))
    return dashboard(UID, "gpufleet / GPU detail", "Every metric of one GPU over time.", ["gpu"], rows,
                     variables(q, gpu=True, mig=True))
