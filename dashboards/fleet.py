"""Fleet overview: GPUs up / lost, utilization and memory heatmaps, power and energy, temperature,
throttling, errors and the GPUs most at risk of failing."""

from __future__ import annotations

from gpufleet.dashboards.panels import (
    TEMPERATURE_WARN_C,
    Q,
    Row,
    bargauge,
    dashboard,
    heatmap,
    stat,
    table,
    target,
    timeseries,
    variables,
)
from grafanalib import core as g

UID = "gpufleet-fleet"


def build(q: Q) -> g.Dashboard:
    node = q.label("temperature_gpu", "node")
    throttling = q.sel("clock_event_active", extra='reason!="gpu_idle"')
    risk24 = q.sel("failure_risk", extra='horizon="24h"')
    mem = f'{q.sel("fb_used")} / ({q.sel("fb_used")} + {q.sel("fb_free")})'
    overview = Row("Fleet", [
        stat("GPUs up", "GPUs answering NVML (gpu_up = 1).", target(f'sum({q.sel("up")})'), "short",
             thresholds=[(None, "green")]),
        stat("GPUs lost", "GPUs lost or fallen off the bus (gpu_up = 0). Any value above 0 pages.",
             target(f'count({q.sel("up")} == 0) or vector(0)'), "short",
             thresholds=[(None, "green"), (1, "red")]),
        stat("Mean utilization", "Mean GPU utilization over the selected nodes.",
             target(f'avg({q.sel("util_gpu")})'), q.unit("util_gpu")),
        stat("Power draw", "Total power drawn by the selected GPUs.",
             target(f'sum({q.sel("power_usage")})'), "watt"),
        stat("Hottest GPU", f"Highest GPU temperature; the alert pack warns above {TEMPERATURE_WARN_C:g} °C.",
             target(f'max({q.sel("temperature_gpu")})'), "celsius",
             thresholds=[(None, "green"), (TEMPERATURE_WARN_C - 5, "orange"), (TEMPERATURE_WARN_C, "red")]),
        stat("Energy (range)", "Energy consumed by the selected GPUs over the dashboard's time range.",
             target(f'sum(increase({q.sel("energy")}[$__range]))'), q.unit("energy")),
    ])
    load = Row("Load", [
        heatmap("GPU utilization across the fleet", "Distribution of per-GPU utilization over time.",
                target(q.sel("util_gpu"), q.legend("util_gpu", "node", "gpu")), q.unit("util_gpu")),
        heatmap("GPU memory in use across the fleet", "Distribution of used / total framebuffer per GPU.",
                target(mem, q.legend("fb_used", "node", "gpu")), "percentunit"),
        timeseries("Power by node", "Power drawn by the GPUs of each node.",
                   [target(f'sum by ({node}) ({q.sel("power_usage")})', "{{" + node + "}}")], "watt",
                   stacked=True),
        bargauge("Energy by node (range)", "Energy consumed by each node's GPUs over the time range.",
                 target(f'sum by ({node}) (increase({q.sel("energy")}[$__range]))', "{{" + node + "}}"),
                 q.unit("energy")),
    ])
    health = Row("Temperature, throttling, errors", [
        heatmap("Temperature distribution", f"Per-GPU temperature; alert threshold {TEMPERATURE_WARN_C:g} °C.",
                target(q.sel("temperature_gpu"), q.legend("temperature_gpu", "node", "gpu")), "celsius"),
        timeseries("Throttling GPUs by reason",
                   "GPUs with an active clock-event (throttle) reason, idle excluded.",
                   [target(f"sum by (reason) ({throttling})",
                           "{{reason}}")], "short", stacked=True),
        timeseries("XID errors by node (1 h)", "XID errors in the last hour by node (any code).",
                   [target(f'sum by ({q.label("xid_errors", "node")}) (increase({q.sel("xid_errors")}[1h]))',
                           "{{" + q.label("xid_errors", "node") + "}}")], "short"),
        timeseries("Uncorrectable ECC errors (1 h)", "Uncorrectable (double-bit) volatile ECC errors in the last hour.",
                   [target(f'sum by ({q.label("ecc_uncorrected_volatile", "node")}) (increase({q.sel("ecc_uncorrected_volatile")}[1h]))',
                           "{{" + q.label("ecc_uncorrected_volatile", "node") + "}}")], "short",
                   thresholds=[(None, "green"), (1, "red")]),
    ])
    risk = Row("Predicted failures", [
        table("Top GPUs by 24 h failure risk",
              "The ten GPUs the champion failure model rates most likely to fail within 24 hours.",
              [target(f"topk(10, {risk24})",
                      instant=True)], "percentunit", width=24),
    ])
    return dashboard(UID, "gpufleet / Fleet overview",
                     "Fleet-wide GPU health, load, power and predicted failures.", ["fleet"],
                     [overview, load, health, risk], variables(q, gpu=False))

