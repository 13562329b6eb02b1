"""AMD XGMI (Infinity Fabric GPU links): per-link state, the device's XGMI error status and per-link
data read / written (KB -> bytes, cumulative)."""

from __future__ import annotations

from gpufleet.exporter.amdsmi_query import num
from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice, entry
from gpufleet.exporter.collectors.base import Emitter
from gpufleet.exporter.nvml_query import NA

KB = 1024
STATE = {"U": 1, "D": 0}  # "X" (disabled: not cabled) and "N/A" are absent


class AmdXgmiCollector(AmdCollector):
    name = "xgmi"

    def __init__(self) -> None:
        super().__init__()
        self._labels: dict[int, tuple[tuple[str, str], ...]] = {}

    def _link(self, i: int) -> tuple[tuple[str, str], ...]:
        lab = self._labels.get(i)
        if lab is None:
            lab = self._labels[i] = (("link", str(i)),)
        return lab

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        status = self.get(dev, "xgmi_link_up", "amdsmi_get_gpu_xgmi_link_status")
        states = entry(status, "status")
        if isinstance(states, list):
            for i, s in enumerate(states):
                if s in STATE:
                    out.sample(dev.uuid, "xgmi_link_up", STATE[s], self._link(i))
        err = self.get(dev, "xgmi_error_status", "amdsmi_gpu_xgmi_error_status")
        if err is not NA:
            self.put(out, dev, "xgmi_error_status", int(err))
        metrics = self.get(dev, "xgmi_rx_bytes", "amdsmi_get_link_metrics")
        links = entry(metrics, "links")
        count = num(entry(metrics, "num_links"))
        if isinstance(links, list) and count:
            for i, link in enumerate(links[: int(count)]):
                self.put(out, dev, "xgmi_rx_bytes", entry(link, "read"), KB, self._link(i))
                self.put(out, dev, "xgmi_tx_bytes", entry(link, "write"), KB, self._link(i))
