"""MIG: whether MIG mode is on. The instances themselves are devices of the source (found at open())
and carry their own memory, process and GPM series, labelled with their parent and profile."""

from __future__ import annotations

import logging

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice
from gpufleet.exporter.nvml_query import NA

log = logging.getLogger(__name__)


class MigCollector(Collector):
    name = "mig"

    def __init__(self) -> None:
        super().__init__()
        self._warned: set[str] = set()

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        mode = self.get(dev, "mig_mode", "nvmlDeviceGetMigMode")
        if mode is NA:
            return
        enabled = int(mode[0]) == int(self.nvml.NVML_DEVICE_MIG_ENABLE)
        out.sample(dev.uuid, "mig_mode", 1 if enabled else 0)
        if enabled != dev.mig_enabled and dev.uuid not in self._warned:
            self._warned.add(dev.uuid)
            log.warning("%s: MIG mode changed since the exporter started; restart it to see the new instances",
                        dev.uuid)
