"""AMD PCIe: link generation and width (current and maximum), replay counter and, when enabled,
throughput (``amdsmi_get_gpu_pci_throughput`` samples for one second per GPU, so it is opt-in:
``AmdSource(pcie_throughput=True)``)."""

from __future__ import annotations

from gpufleet.exporter.amdsmi_query import num
from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice, entry
from gpufleet.exporter.collectors.base import Emitter
from gpufleet.exporter.nvml_query import NA

# transfer rate (MT/s) -> PCIe generation
GENERATIONS = {2500: 1, 5000: 2, 8000: 3, 16000: 4, 32000: 5, 64000: 6, 128000: 7}


def generation(mts: float | None) -> int | None:
    if mts is None:
        return None
    if mts < 1000:  # some ASICs report GT/s
        mts *= 1000
    return GENERATIONS.get(round(mts))


class AmdPcieCollector(AmdCollector):
    name = "pcie"

    def __init__(self, throughput: bool = False) -> None:
        super().__init__()
        self.throughput = throughput

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        info = self.get(dev, "pcie_link_width", "amdsmi_get_pcie_info")
        self.put(out, dev, "pcie_link_width", entry(info, "pcie_metric", "pcie_width"))
        self.put(out, dev, "pcie_link_width_max", entry(info, "pcie_static", "max_pcie_width"))
        self.put(out, dev, "pcie_link_gen", generation(num(entry(info, "pcie_metric", "pcie_speed"))))
        self.put(out, dev, "pcie_link_gen_max", generation(num(entry(info, "pcie_static", "max_pcie_speed"))))
        replay = num(entry(info, "pcie_metric", "pcie_replay_count"))
        if replay is None:
            got = self.get(dev, "pcie_replay", "amdsmi_get_gpu_pci_replay_counter")
            replay = None if got is NA else num(got)
        self.put(out, dev, "pcie_replay", replay)
        if self.throughput:
            tp = self.get(dev, "pcie_tx", "amdsmi_get_gpu_pci_throughput")
            size = num(entry(tp, "max_pkt_sz"))
            if size:
                self.put(out, dev, "pcie_tx", entry(tp, "sent"), size)
                self.put(out, dev, "pcie_rx", entry(tp, "received"), size)
