"""Power: draw, limits (mW -> watts), total energy (mJ -> joules), performance state."""

from __future__ import annotations

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice, make_sample
from gpufleet.exporter.nvml_query import NA

MILLI = 1e-3
PSTATE_UNKNOWN = 32
PLAN = (("power_usage", "nvmlDeviceGetPowerUsage", (), MILLI),
        ("power_limit", "nvmlDeviceGetPowerManagementLimit", (), MILLI),
        ("power_limit_enforced", "nvmlDeviceGetEnforcedPowerLimit", (), MILLI),
        ("power_limit_default", "nvmlDeviceGetPowerManagementDefaultLimit", (), MILLI),
        ("energy", "nvmlDeviceGetTotalEnergyConsumption", (), MILLI))


class PowerCollector(Collector):
    name = "power"

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        self.emit_all(dev, out, PLAN)
        pstate = self.get(dev, "pstate", "nvmlDeviceGetPerformanceState")
        if pstate is not NA and int(pstate) != PSTATE_UNKNOWN:
            out.samples.append(make_sample(dev.uuid, "pstate", float(int(pstate)), out.now, ()))
