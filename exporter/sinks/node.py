"""The exporter's node info: CPUs and physical memory of the host, as ``gpufleet_node_cpus`` and
``gpufleet_node_memory_total_bytes`` labelled with each exported node's name, so a control plane that
reads the fleet from Prometheus knows each node's capacity where no node_exporter runs."""

from __future__ import annotations

import os

from gpufleet.exporter.schema import Snapshot
from gpufleet.exporter.sinks.base import SelfMetric, Sink


def host_capacity() -> tuple[int | None, int | None]:
    """(logical CPUs, physical memory bytes) of this host; None where the OS does not say."""
    cpus = os.cpu_count()
    try:
        mem: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = None
    return cpus, mem


class NodeInfoSink(Sink):
    """Remembers the nodes of the latest snapshot; serves their capacity as self-metrics."""

    name = "node_info"

    def __init__(self, node: str | None = None) -> None:
        self.nodes: list[str] = [node] if node else []
        self.cpus, self.memory = host_capacity()

    def write(self, snapshot: Snapshot) -> None:
        nodes = sorted({d.node for d in snapshot.devices}) or [snapshot.node]
        if nodes != self.nodes:
            self.nodes = nodes

    def self_metrics(self) -> list[SelfMetric]:
        out: list[SelfMetric] = []
        for n in self.nodes:
            labels = (("node", n),)
            if self.cpus is not None:
                out.append(("node_cpus", labels, float(self.cpus)))
            if self.memory is not None:
                out.append(("node_memory_total", labels, float(self.memory)))
        return out
