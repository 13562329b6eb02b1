"""AMD utilization: graphics / compute engine (gfx_activity) and memory controller (umc_activity), % -> ratio."""

from __future__ import annotations

from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice, entry
from gpufleet.exporter.collectors.base import Emitter

PCT = 0.01


class AmdUtilizationCollector(AmdCollector):
    name = "utilization"

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        activity = self.get(dev, "util_gpu", "amdsmi_get_gpu_activity")
        self.put(out, dev, "util_gpu", entry(activity, "gfx_activity"), PCT)
        self.put(out, dev, "util_memory", entry(activity, "umc_activity"), PCT)
