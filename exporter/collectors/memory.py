"""Memory: framebuffer total / used / free / reserved (nvmlDeviceGetMemoryInfo v2) and BAR1, in bytes."""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice
from gpufleet.exporter.nvml_query import NA


class MemoryCollector(Collector):
    name = "memory"
    mig = True

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        n = self.nvml
        info: Any = NA
        version = getattr(n, "nvmlMemory_v2", None)
        if version is not None and not self.query.is_unsupported(dev.uuid, "fb_v2"):
            info = self.get(dev, "fb_v2", "nvmlDeviceGetMemoryInfo", version=version)
            if info is NA:
                # the v2 entry point is missing or refused: remember and use v1 from now on
                self.query.mark_unsupported(dev.uuid, "fb_v2", "v2 unavailable")
        if info is NA:
            info = self.get(dev, "fb_used", "nvmlDeviceGetMemoryInfo")
        if info is not NA:
            out.sample(dev.uuid, "fb_total", info.total)
            out.sample(dev.uuid, "fb_used", info.used)
            out.sample(dev.uuid, "fb_free", info.free)
            reserved = getattr(info, "reserved", None)
            if reserved is not None:
                out.sample(dev.uuid, "fb_reserved", reserved)
        if dev.is_mig:
            return
        bar1 = self.get(dev, "bar1_used", "nvmlDeviceGetBAR1MemoryInfo")
        if bar1 is not NA:
            out.sample(dev.uuid, "bar1_used", bar1.bar1Used)
            out.sample(dev.uuid, "bar1_total", bar1.bar1Total)
