"""Processes and pods: per-process and per-pod GPU memory and utilization (attributed through cgroups)."""

from __future__ import annotations

from gpufleet.dashboards.panels import Q, Row, dashboard, table, target, timeseries, variables
from grafanalib import core as g

UID = "gpufleet-processes"
POD = 'namespace=~"$namespace",pod=~"$pod"'


def build(q: Q) -> g.Dashboard:
    mem = q.sel("process_memory", gpu=True, extra=POD)
    sm = q.sel("process_sm_util", gpu=True, extra=POD)
    memu = q.sel("process_memory_util", gpu=True, extra=POD)
    pod_mem = q.sel("pod_memory", extra=POD)
    info = q.sel("process_info", gpu=True, extra=POD)
    rows = [
        Row("Pods", [
            timeseries("GPU memory by pod", "GPU memory used by each Kubernetes pod's containers.",
                       [target(f"sum by (namespace, pod) ({pod_mem})", "{{namespace}}/{{pod}}")], "bytes",
                       stacked=True),
            timeseries("SM utilization by pod", "Sum of the SM utilization of each pod's processes.",
                       [target(f"sum by (namespace, pod) ({sm})", "{{namespace}}/{{pod}}")], "percentunit"),
        ]),
        Row("Processes", [
            timeseries("GPU memory by process", "GPU memory used by each process (series end with the process).",
                       [target(mem, "{{node}}/{{gpu}} pid {{pid}} {{container}}")], "bytes"),
            timeseries("SM utilization by process", "SM utilization of each process over the last sample period.",
                       [target(sm, "{{node}}/{{gpu}} pid {{pid}}")], "percentunit"),
            timeseries("Memory-controller utilization by process",
                       "Memory-controller utilization of each process over the last sample period.",
                       [target(memu, "{{node}}/{{gpu}} pid {{pid}}")], "percentunit"),
            timeseries("Processes per GPU", "Number of processes using each GPU.",
                       [target(q.sel("processes", gpu=True), "{{node}}/{{gpu}}")], "short"),
            table("Process list", "Processes using the selected GPUs now: name, user, container, pod, Slurm job.",
                  [target(info, instant=True)], "short", width=24),
        ]),
    ]
    return dashboard(UID, "gpufleet / Processes and pods", "Per-process and per-pod GPU memory and utilization.",
                     ["processes"], rows, variables(q, gpu=True, pods=True))
