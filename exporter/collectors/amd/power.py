"""AMD power: socket power (watts), power cap and default cap (microwatts -> watts), energy
(accumulator x resolution, microjoules -> joules)."""

from __future__ import annotations

from gpufleet.exporter.amdsmi_query import num
from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice, entry
from gpufleet.exporter.collectors.base import Emitter

MICRO = 1e-6


class AmdPowerCollector(AmdCollector):
    name = "power"

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        info = self.get(dev, "power_usage", "amdsmi_get_power_info")
        for key in ("current_socket_power", "average_socket_power", "socket_power"):
            value = num(entry(info, key))
            if value is not None and value > 0:  # 0 means "not this counter on this ASIC"
                out.sample(dev.uuid, "power_usage", value)
                break
        cap = self.get(dev, "power_limit", "amdsmi_get_power_cap_info")
        self.put(out, dev, "power_limit", entry(cap, "power_cap"), MICRO)
        self.put(out, dev, "power_limit_default", entry(cap, "default_power_cap"), MICRO)
        energy = self.get(dev, "energy", "amdsmi_get_energy_count")
        acc, res = num(entry(energy, "energy_accumulator")), num(entry(energy, "counter_resolution"))
        if acc is not None and res:
            out.sample(dev.uuid, "energy", acc * res * MICRO)
