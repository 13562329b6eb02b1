"""Clocks: current and maximum SM, memory, graphics and video clocks (MHz from NVML -> hertz)."""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice

MHZ = 1e6


class ClocksCollector(Collector):
    name = "clocks"

    def __init__(self) -> None:
        super().__init__()
        self._plan: tuple[tuple[str, str, tuple[Any, ...], float], ...] | None = None

    def plan(self) -> tuple[tuple[str, str, tuple[Any, ...], float], ...]:
        if self._plan is None:
            n = self.nvml
            self._plan = tuple(
                [(f, "nvmlDeviceGetClockInfo", (c,), MHZ) for f, c in (
                    ("clock_sm", n.NVML_CLOCK_SM), ("clock_memory", n.NVML_CLOCK_MEM),
                    ("clock_graphics", n.NVML_CLOCK_GRAPHICS), ("clock_video", n.NVML_CLOCK_VIDEO))]
                + [(f, "nvmlDeviceGetMaxClockInfo", (c,), MHZ) for f, c in (
                    ("clock_sm_max", n.NVML_CLOCK_SM), ("clock_memory_max", n.NVML_CLOCK_MEM),
                    ("clock_graphics_max", n.NVML_CLOCK_GRAPHICS))])
        return self._plan

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        self.emit_all(dev, out, self.plan())
