"""AMD VRAM total and used (MB -> bytes) from ``amdsmi_get_gpu_vram_usage``."""

from __future__ import annotations

from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice, entry
from gpufleet.exporter.collectors.base import Emitter

MB = 2 ** 20


class AmdMemoryCollector(AmdCollector):
    name = "memory"

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        usage = self.get(dev, "fb_used", "amdsmi_get_gpu_vram_usage")
        self.put(out, dev, "fb_total", entry(usage, "vram_total"), MB)
        self.put(out, dev, "fb_used", entry(usage, "vram_used"), MB)
