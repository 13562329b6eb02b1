"""Power: draw, limits (mW -> watts), total energy (mJ -> joules), performance state."""

from __future__ import annotations

from exporter.collectors.base import Collector, Emitter, NvmlDevice
from exporter.nvml_query import NA

MILLI = 1e-3
PSTATE_UNKNOWN = 32


class PowerCollector(Collector):
    name = "power"

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        self.emit(dev, out, "power_usage", "nvmlDeviceGetPowerUsage", scale=MILLI)
        self.emit(dev, out, "power_limit", "nvmlDeviceGetPowerManagementLimit", scale=MILLI)
        self.emit(dev, out, "power_limit_enforced", "nvmlDeviceGetEnforcedPowerLimit", scale=MILLI)
        self.emit(dev, out, "power_limit_default", "nvmlDeviceGetPowerManagementDefaultLimit", scale=MILLI)
        self.emit(dev, out, "energy", "nvmlDeviceGetTotalEnergyConsumption", scale=MILLI)
        pstate = self.get(dev, "pstate", "nvmlDeviceGetPerformanceState")
        if pstate is not NA and int(pstate) != PSTATE_UNKNOWN:
            out.sample(dev.uuid, "pstate", int(pstate))
