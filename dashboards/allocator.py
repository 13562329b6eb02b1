"""Allocator and cost: queue length and wait, allocation ratio, fragmentation, idle allocated GPUs,
preemptions, GPU-hours lost and cost by team."""

from __future__ import annotations

from gpufleet.dashboards.panels import (
    IDLE_UTILIZATION,
    Q,
    Row,
    bargauge,
    dashboard,
    stat,
    table,
    target,
    timeseries,
    variables,
)
from grafanalib import core as g

UID = "gpufleet-allocator"


def build(q: Q) -> g.Dashboard:
    idle = q.sel("gpu_allocated_idle")
    rows = [
        Row("Now", [
            stat("Allocation ratio", "Allocated GPU share over total capacity.",
                 target(q.name("allocation_ratio")), "percentunit", width=4),
            stat("Fragmentation", "Share of free GPU capacity the current request mix cannot use.",
                 target(q.name("fragmentation_ratio")), "percentunit",
                 thresholds=[(None, "green"), (0.2, "orange"), (0.4, "red")], width=4),
            stat("Pending jobs", "Jobs waiting in the queue.", target(f'sum({q.name("queue_pending_jobs")})'),
                 "short", width=4),
            stat("Running jobs", "Jobs running now.", target(q.name("running_jobs")), "short", width=4),
            stat("Idle allocated GPUs",
                 f"GPUs allocated to a job but under {IDLE_UTILIZATION:.0%} utilization for the idle window.",
                 target(f"sum({idle})"), "short", thresholds=[(None, "green"), (1, "orange")], width=4),
            stat("GPU-hours lost (range)", "Work lost to GPU failures and drains since the last checkpoints.",
                 target(f'sum(increase({q.name("gpu_time_lost")}[$__range])) / 3600'), "short", width=4),
        ]),
        Row("Queue and allocation", [
            timeseries("Queue length by priority", "Jobs waiting, by priority class.",
                       [target(q.name("queue_pending_jobs"), "{{priority}}")], "short", stacked=True),
            timeseries("Oldest wait by priority", "Wait of the oldest queued job, by priority class.",
                       [target(q.name("queue_wait_seconds"), "{{priority}}")], "s"),
            timeseries("Allocated GPUs by type", "GPUs allocated (fractional shares summed), by GPU type.",
                       [target(q.name("allocated_gpus"), "{{gpu_type}}")], "short", stacked=True),
            timeseries("Allocation ratio and fragmentation", "Allocation ratio against fragmentation over time.",
                       [target(q.name("allocation_ratio"), "allocation", ref="A"),
                        target(q.name("fragmentation_ratio"), "fragmentation", ref="B")], "percentunit"),
            timeseries("Preemptions (1 h)", "Jobs preempted in the last hour.",
                       [target(f'increase({q.name("preemptions")}[1h])', "preemptions")], "short"),
            table("Allocated GPUs by idle state", "Every allocated GPU with 1 when it has been idle for the idle "
                  "window (reclaim or right-size those jobs), idle ones first.",
                  [target(f"sort_desc({idle})", instant=True)], "short"),
        ]),
        Row("Cost", [
            bargauge("Cost by team (range)", "Cost of the GPU-hours each team used over the time range.",
                     target(f'sum by (team) (increase({q.name("cost_dollars")}[$__range]))', "{{team}}"),
                     "currencyUSD", width=24),
        ]),
    ]
    return dashboard(UID, "gpufleet / Allocator and cost", "Queue, allocation, fragmentation, idle GPUs and cost.",
                     ["allocator", "cost"], rows, variables(q, gpu=False))
