"""Health / identity: the ``info`` series (driver, CUDA, VBIOS, serial, virtualization as labels).

``up`` is not a sample: the source puts every device's 1/0 in ``Snapshot.up``.
"""

from __future__ import annotations

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice


class HealthCollector(Collector):
    name = "health"

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        d = dev.device
        out.sample(d.uuid, "info", 1, {"driver_version": d.driver_version or "",
                                        "cuda_version": d.cuda_version or "",
                                        "vbios_version": d.vbios_version or "", "serial": d.serial or "",
                                        "virtualization": d.virtualization or ""})
