"""Processes: per-process GPU memory and SM / memory utilization, attributed to container and pod.

Series carry ``pid container pod namespace`` (bounded: a process's series disappear when it ends);
the rest of its identity goes to ``process_info``. ``pod_memory`` sums memory per pod container.
On a GPU in MIG mode the processes are read per MIG instance, not on the parent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice
from gpufleet.exporter.nvml_query import NA
from gpufleet.exporter.procattr import ProcAttributor

PCT = 0.01


class ProcessesCollector(Collector):
    name = "processes"
    mig = True

    def __init__(self, proc_root: Path = Path("/proc"), log_root: Path = Path("/var/log")) -> None:
        super().__init__()
        self.attributor = ProcAttributor(proc_root, log_root)
        self._last_ts: dict[str, int] = {}
        self._cycle_started = False

    def _processes(self, dev: NvmlDevice) -> dict[int, int | None] | None:
        found = False
        procs: dict[int, int | None] = {}
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            key = "processes" if fn.endswith("ComputeRunningProcesses") else "processes_graphics"
            got = self.get(dev, key, fn)
            if got is NA and fn in self.query.missing_functions:
                got = self.get(dev, key, fn + "_v2")  # drivers before R510 lack the _v3 entry point
            if got is NA:
                continue
            found = True
            for p in got:
                mem = getattr(p, "usedGpuMemory", None)
                pid = int(p.pid)
                if procs.get(pid) is None:
                    procs[pid] = None if mem is None else int(mem)
        return procs if found else None

    def _utilization(self, dev: NvmlDevice) -> dict[int, Any]:
        n = self.nvml
        samples = self.get(dev, "process_sm_util", "nvmlDeviceGetProcessUtilization",
                           self._last_ts.get(dev.uuid, 0), empty=(n.NVML_ERROR_NOT_FOUND, n.NVML_SUCCESS))
        # (the binding raises NVMLError(NVML_SUCCESS) when the first sizing call finds no samples)
        latest: dict[int, Any] = {}
        if samples is NA:
            return latest
        for s in samples:
            pid = int(s.pid)
            if pid not in latest or s.timeStamp >= latest[pid].timeStamp:
                latest[pid] = s
            self._last_ts[dev.uuid] = max(self._last_ts.get(dev.uuid, 0), int(s.timeStamp))
        return latest

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        if dev.mig_enabled:
            return
        if not self._cycle_started:
            self.attributor.begin_cycle()
            self._cycle_started = True
        procs = self._processes(dev)
        if procs is None:
            return
        out.sample(dev.uuid, "processes", len(procs))
        util = self._utilization(dev) if procs else {}
        pods: dict[tuple[str, str, str], int] = {}
        for pid, mem in sorted(procs.items()):
            att = self.attributor.attribute(pid)
            labels = {"pid": str(pid), "container": att.container, "pod": att.pod, "namespace": att.namespace}
            out.sample(dev.uuid, "process_memory", mem, labels)
            sample = util.get(pid)
            if sample is not None:
                out.sample(dev.uuid, "process_sm_util", sample.smUtil, labels, PCT)
                out.sample(dev.uuid, "process_memory_util", sample.memUtil, labels, PCT)
            info = {"pid": str(pid), "process_name": self.attributor.process_name(pid),
                    "user": self.attributor.user(pid), "container": att.container,
                    "container_id": att.container_id, "pod": att.pod, "pod_uid": att.pod_uid,
                    "namespace": att.namespace, "slurm_job_id": att.slurm_job_id}
            out.sample(dev.uuid, "process_info", 1, info)
            if att.pod and mem is not None:
                key = (att.namespace, att.pod, att.container)
                pods[key] = pods.get(key, 0) + mem
        for (ns, pod, container), mem in sorted(pods.items()):
            out.sample(dev.uuid, "pod_memory", mem, {"namespace": ns, "pod": pod, "container": container})

    def collect_node(self, devices: list[NvmlDevice], out: Emitter) -> None:
        self._cycle_started = False
