"""PCIe: TX/RX throughput (KB/s -> bytes/s), replay counter, current and maximum link generation and width."""

from __future__ import annotations

from exporter.collectors.base import Collector, Emitter, NvmlDevice

KIB = 1024.0


class PcieCollector(Collector):
    name = "pcie"

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        n = self.nvml
        self.emit(dev, out, "pcie_tx", "nvmlDeviceGetPcieThroughput", n.NVML_PCIE_UTIL_TX_BYTES, scale=KIB)
        self.emit(dev, out, "pcie_rx", "nvmlDeviceGetPcieThroughput", n.NVML_PCIE_UTIL_RX_BYTES, scale=KIB)
        self.emit(dev, out, "pcie_replay", "nvmlDeviceGetPcieReplayCounter")
        self.emit(dev, out, "pcie_link_gen", "nvmlDeviceGetCurrPcieLinkGeneration")
        self.emit(dev, out, "pcie_link_width", "nvmlDeviceGetCurrPcieLinkWidth")
        self.emit(dev, out, "pcie_link_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration")
        self.emit(dev, out, "pcie_link_width_max", "nvmlDeviceGetMaxPcieLinkWidth")
