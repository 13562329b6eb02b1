"""AMD health / identity: the ``info`` series, with the same labels as NVIDIA's (cuda_version empty)."""

from __future__ import annotations

from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice
from gpufleet.exporter.collectors.base import Emitter


class AmdHealthCollector(AmdCollector):
    name = "health"

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        d = dev.device
        out.sample(d.uuid, "info", 1, {"driver_version": d.driver_version or "", "cuda_version": "",
                                        "vbios_version": d.vbios_version or "", "serial": d.serial or "",
                                        "virtualization": d.virtualization or ""})
