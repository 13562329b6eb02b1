"""Clocks: current and maximum SM, memory, graphics and video clocks (MHz from NVML -> hertz)."""

from __future__ import annotations

from exporter.collectors.base import Collector, Emitter, NvmlDevice

MHZ = 1e6


class ClocksCollector(Collector):
    name = "clocks"

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        n = self.nvml
        for field_id, clock in (("clock_sm", n.NVML_CLOCK_SM), ("clock_memory", n.NVML_CLOCK_MEM),
                                ("clock_graphics", n.NVML_CLOCK_GRAPHICS), ("clock_video", n.NVML_CLOCK_VIDEO)):
            self.emit(dev, out, field_id, "nvmlDeviceGetClockInfo", clock, scale=MHZ)
        for field_id, clock in (("clock_sm_max", n.NVML_CLOCK_SM), ("clock_memory_max", n.NVML_CLOCK_MEM),
                                ("clock_graphics_max", n.NVML_CLOCK_GRAPHICS)):
            self.emit(dev, out, field_id, "nvmlDeviceGetMaxClockInfo", clock, scale=MHZ)
