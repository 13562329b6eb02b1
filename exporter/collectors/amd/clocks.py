"""AMD clocks (MHz -> hertz): GFX is the compute clock (``clock_sm``), MEM the memory clock, VCLK0 the
video clock; current and maximum from one ``amdsmi_get_clock_info`` call each."""

from __future__ import annotations

from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice, entry
from gpufleet.exporter.collectors.base import Emitter

MHZ = 1e6
CLOCKS = (("GFX", "clock_sm", "clock_sm_max"), ("MEM", "clock_memory", "clock_memory_max"),
          ("VCLK0", "clock_video", None))


class AmdClocksCollector(AmdCollector):
    name = "clocks"

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        for member, current, maximum in CLOCKS:
            kind = self.enum("AmdSmiClkType", member)
            if kind is None:
                continue
            info = self.get(dev, current, "amdsmi_get_clock_info", kind)
            self.put(out, dev, current, entry(info, "clk"), MHZ)
            if maximum:
                self.put(out, dev, maximum, entry(info, "max_clk"), MHZ)
