"""Virtualization: the vGPU software licence state (only meaningful inside a vGPU guest)."""

from __future__ import annotations

from exporter.collectors.base import Collector, Emitter, NvmlDevice
from exporter.nvml_query import NA


class VirtualizationCollector(Collector):
    name = "virtualization"

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        if dev.device.virtualization != "vgpu_guest":
            return
        got = self.get(dev, "vgpu_license_status", "nvmlDeviceGetGridLicensableFeatures")
        if got is NA or not int(got.isGridLicenseSupported):
            return
        count = int(got.licensableFeaturesCount)
        licensed = any(int(got.gridLicensableFeatures[i].featureState) for i in range(count))
        out.sample(dev.uuid, "vgpu_license_status", 1 if licensed else 0)
