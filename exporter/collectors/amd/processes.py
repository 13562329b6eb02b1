"""AMD processes: count, VRAM per process, identity (container / pod / Slurm job from /proc), pod totals.

The same series as NVIDIA's processes family; per-process utilization is absent (amdsmi reports
cumulative engine time, not a utilization sample).
"""

from __future__ import annotations

from pathlib import Path

from gpufleet.exporter.amdsmi_query import num
from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice, entry
from gpufleet.exporter.collectors.base import Emitter
from gpufleet.exporter.nvml_query import NA
from gpufleet.exporter.procattr import ProcAttributor


class AmdProcessesCollector(AmdCollector):
    name = "processes"

    def __init__(self, proc_root: Path = Path("/proc"), log_root: Path = Path("/var/log")) -> None:
        super().__init__()
        self.attributor = ProcAttributor(proc_root, log_root)
        self._cycle_started = False

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        if not self._cycle_started:
            self.attributor.begin_cycle()
            self._cycle_started = True
        got = self.get(dev, "processes", "amdsmi_get_gpu_process_list")
        if got is NA or not isinstance(got, list):
            return
        procs: dict[int, float | None] = {}
        for p in got:
            pid = num(entry(p, "pid"))
            if pid is None:
                continue
            mem = num(entry(p, "memory_usage", "vram_mem"))
            procs[int(pid)] = mem if mem is not None else num(entry(p, "mem"))
        out.sample(dev.uuid, "processes", len(procs))
        pods: dict[tuple[str, str, str], float] = {}
        for pid, mem in sorted(procs.items()):
            att = self.attributor.attribute(pid)
            labels = {"pid": str(pid), "container": att.container, "pod": att.pod, "namespace": att.namespace}
            out.sample(dev.uuid, "process_memory", mem, labels)
            out.sample(dev.uuid, "process_info", 1, {
                "pid": str(pid), "process_name": self.attributor.process_name(pid),
                "user": self.attributor.user(pid), "container": att.container, "container_id": att.container_id,
                "pod": att.pod, "pod_uid": att.pod_uid, "namespace": att.namespace,
                "slurm_job_id": att.slurm_job_id})
            if att.pod and mem is not None:
                key = (att.namespace, att.pod, att.container)
                pods[key] = pods.get(key, 0.0) + mem
        for (ns, pod, container), mem in sorted(pods.items()):
            out.sample(dev.uuid, "pod_memory", mem, {"namespace": ns, "pod": pod, "container": container})

    def collect_node(self, devices: list[AmdDevice], out: Emitter) -> None:
        self._cycle_started = False
