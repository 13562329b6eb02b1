"""PCIe: TX/RX throughput (KB/s -> bytes/s), replay counter, current and maximum link generation and width."""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice

KIB = 1024.0


class PcieCollector(Collector):
    name = "pcie"

    def __init__(self) -> None:
        super().__init__()
        self._plan: tuple[tuple[str, str, tuple[Any, ...], float], ...] | None = None

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        if self._plan is None:
            n = self.nvml
            self._plan = (
                ("pcie_tx", "nvmlDeviceGetPcieThroughput", (n.NVML_PCIE_UTIL_TX_BYTES,), KIB),
                ("pcie_rx", "nvmlDeviceGetPcieThroughput", (n.NVML_PCIE_UTIL_RX_BYTES,), KIB),
                ("pcie_replay", "nvmlDeviceGetPcieReplayCounter", (), 1.0),
                ("pcie_link_gen", "nvmlDeviceGetCurrPcieLinkGeneration", (), 1.0),
                ("pcie_link_width", "nvmlDeviceGetCurrPcieLinkWidth", (), 1.0),
                ("pcie_link_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration", (), 1.0),
                ("pcie_link_width_max", "nvmlDeviceGetMaxPcieLinkWidth", (), 1.0),
            )
        self.emit_all(dev, out, self._plan)
