"""A synthetic Source for sink and loop tests: every catalogue device/process field, zero cost.

Devices are ``n`` physical GPUs plus, optionally, two MIG instances on the first GPU. Values change with
``now`` so consecutive snapshots differ; counters only grow. ``lost`` makes a device report ``up 0`` and
no samples; ``frozen`` makes a device repeat the samples (and timestamps) of its last good cycle.
"""

from __future__ import annotations

from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.schema import CollectorStat, Device, Sample, Snapshot
from gpufleet.exporter.sources.base import Source

# Families a node exporter produces: every device / process family except those other processes
# export (analytics outputs, allocator state).
NOT_EXPORTER = ("analytics", "allocator", "alerting", "self")
EXPORTER_FAMILIES = tuple(sorted({m.family for m in catalogue()
                                 if m.scope in ("device", "process") and m.family not in NOT_EXPORTER}))

LABEL_VALUES: dict[str, list[str]] = {
    "link": ["0", "1"],
    "location": ["l2_cache", "device_memory"],
    "reason": ["sw_power_cap", "hw_slowdown"],
    "xid": ["79", "48"],
}
PROCESS_LABELS = {"pid": "4242", "container": "trainer", "pod": "train-0", "namespace": "ml",
                  "process_name": "python", "user": "alice", "container_id": "abc123", "pod_uid": "uid-1",
                  "slurm_job_id": "77"}


def exporter_metrics() -> list:  # type: ignore[type-arg]
    """Catalogue rows a node exporter emits (device and process scope of the exporter families)."""
    return [m for m in catalogue() if m.family in EXPORTER_FAMILIES and m.scope in ("device", "process")]


class SyntheticSource(Source):
    name = "synthetic"

    def __init__(self, n: int = 2, node: str = "node-a", mig: bool = True, fields: set[str] | None = None) -> None:
        self.node = node
        self._devices = [
            Device(uuid=f"GPU-{i:08d}-0000-4000-8000-000000000000", index=i, node=node, model="NVIDIA H100 80GB HBM3",
                   pci_bus_id=f"00000000:{i + 0x10:02X}:00.0", memory_total_bytes=80 * 2**30,
                   driver_version="550.54.15", cuda_version="12.4", vbios_version="96.00.99.00.01",
                   serial=f"16500{i:05d}", virtualization="baremetal")
            for i in range(n)
        ]
        if mig and n:
            parent = self._devices[0]
            self._devices += [
                Device(uuid=f"MIG-{gi:04d}-aaaa-bbbb-cccc-000000000000", index=n + gi, node=node, model=parent.model,
                       pci_bus_id=parent.pci_bus_id, mig_parent_uuid=parent.uuid, mig_gi_id=gi, mig_ci_id=0,
                       mig_profile="3g.40gb")
                for gi in (1, 2)
            ]
        self.metrics = [m for m in exporter_metrics() if fields is None or m.field in fields]
        self.lost: set[str] = set()
        self.frozen: set[str] = set()
        self.fail_collector: str | None = None
        self._last: dict[str, list[Sample]] = {}
        self.calls = 0

    def devices(self) -> list[Device]:
        return list(self._devices)

    def _samples(self, d: Device, now: float) -> list[Sample]:
        out: list[Sample] = []
        k = self.calls
        for m in self.metrics:
            if m.field in ("up", "info"):
                continue
            if d.is_mig and m.family not in ("memory", "utilization", "processes"):
                continue
            value = float(d.index + 1) * (k + 1) if m.is_counter else 0.5 + 0.01 * ((d.index + k) % 10)
            if m.scope == "process":
                labels = tuple(sorted((lab, PROCESS_LABELS[lab]) for lab in m.labels))
                out.append(Sample(d.uuid, m.field, value, now, labels))
            elif m.labels:
                key, rest = m.labels[0], tuple((lab, "1") for lab in m.labels[1:])
                for v in LABEL_VALUES.get(key, ["0"]):
                    out.append(Sample(d.uuid, m.field, value, now, tuple(sorted(((key, v), *rest)))))
            else:
                out.append(Sample(d.uuid, m.field, value, now))
        return out

    def collect(self, now: float) -> Snapshot:
        snap = Snapshot(ts=now, node=self.node, devices=list(self._devices))
        for d in self._devices:
            snap.up[d.uuid] = 0 if d.uuid in self.lost else 1
            if d.uuid in self.lost:
                continue
            if d.uuid in self.frozen and d.uuid in self._last:
                snap.samples += self._last[d.uuid]
                continue
            samples = self._samples(d, now)
            self._last[d.uuid] = samples
            snap.samples += samples
        for fam in sorted({m.family for m in self.metrics}):
            ok = fam != self.fail_collector
            snap.stats.append(CollectorStat(fam, 0.001, ok, now, None if ok else "synthetic failure"))
        self.calls += 1
        return snap
