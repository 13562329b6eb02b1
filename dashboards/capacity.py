"""Demand and capacity: forecast fans against actual demand, capacity and reserved lines, the planner's
recommendation and the autoscaling advice."""

from __future__ import annotations

from gpufleet.dashboards.panels import Q, Row, dashboard, stat, target, timeseries, variables
from grafanalib import core as g

UID = "gpufleet-capacity"


def build(q: Q) -> g.Dashboard:
    fc = q.name("demand_forecast")
    fan = [
        target(f'sum({fc}{{quantile="0.05"}})', "p05", ref="A"),
        target(f'sum({fc}{{quantile="0.25"}})', "p25", ref="B"),
        target(f'sum({fc}{{quantile="0.5"}})', "median forecast", ref="C"),
        target(f'sum({fc}{{quantile="0.75"}})', "p75", ref="D"),
        target(f'sum({fc}{{quantile="0.95"}})', "p95", ref="E"),
        target(f'sum({q.name("allocated_gpus")}) + sum({q.name("queue_pending_gpus")})', "actual demand", ref="F"),
        target(f'sum({q.name("capacity_gpus")})', "capacity", ref="G"),
        target(f'sum({q.name("reserved_recommended")})', "recommended reserved", ref="H"),
    ]
    rows = [
        Row("Recommendation", [
            stat("Recommended reserved GPUs", "GPUs the capacity planner recommends reserving (all types and terms).",
                 target(f'sum({q.name("reserved_recommended")})'), "short", width=6),
            stat("Capacity", "GPUs in the fleet.", target(f'sum({q.name("capacity_gpus")})'), "short", width=6),
            stat("Median demand forecast", "Median forecast GPU demand at the forecast horizon.",
                 target(f'sum({fc}{{quantile="0.5"}})'), "short", width=6),
            stat("Recommended nodes", "Node count the autoscaling advice recommends (HPA / KEDA can scale on it).",
                 target(f'sum({q.name("autoscale_recommended_nodes")})'), "short", width=6),
        ]),
        Row("Demand", [
            timeseries("Demand forecast against actual demand",
                       "Forecast quantiles (fan) against allocated + queued GPUs, with the capacity and reserved lines.",
                       fan, "short", width=24, height=10),
            timeseries("Autoscaling advice", "Recommended node count per pool over time.",
                       [target(f'{q.name("autoscale_recommended_nodes")}', "{{pool}}")], "short"),
            timeseries("Queued GPU demand", "GPUs requested by jobs waiting in the queue.",
                       [target(f'sum({q.name("queue_pending_gpus")})', "pending GPUs")], "short"),
        ]),
    ]
    return dashboard(UID, "gpufleet / Demand and capacity", "Demand forecasts, capacity, reservations, autoscaling.",
                     ["capacity"], rows, variables(q, gpu=False), refresh="5m")
