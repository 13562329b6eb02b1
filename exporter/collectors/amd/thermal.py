"""AMD temperatures (edge, junction / hotspot, memory) and fan speed as a share of its maximum.

Memory temperature: the VRAM sensor, or on HBM parts without one the hottest HBM stack.
"""

from __future__ import annotations

from gpufleet.exporter.amdsmi_query import num
from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice
from gpufleet.exporter.collectors.base import Emitter
from gpufleet.exporter.nvml_query import NA

HBM = ("HBM_0", "HBM_1", "HBM_2", "HBM_3")


class AmdThermalCollector(AmdCollector):
    name = "thermal"

    def _temp(self, dev: AmdDevice, field_id: str, sensor: str) -> float | None:
        kind = self.enum("AmdSmiTemperatureType", sensor)
        current = self.enum("AmdSmiTemperatureMetric", "CURRENT")
        if kind is None or current is None:
            return None
        got = self.get(dev, field_id, "amdsmi_get_temp_metric", kind, current)
        return None if got is NA else num(got)

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        self.put(out, dev, "temperature_gpu", self._temp(dev, "temperature_gpu", "EDGE"))
        self.put(out, dev, "temperature_junction", self._temp(dev, "temperature_junction", "HOTSPOT"))
        mem = self._temp(dev, "temperature_memory", "VRAM")
        if mem is None:
            stacks = [self._temp(dev, f"temperature_memory:{s}", s) for s in HBM]
            mem = max((t for t in stacks if t is not None), default=None)
        self.put(out, dev, "temperature_memory", mem)
        speed = self.get(dev, "fan_speed", "amdsmi_get_gpu_fan_speed", 0)
        top = self.get(dev, "fan_speed", "amdsmi_get_gpu_fan_speed_max", 0) if speed is not NA else NA
        s, t = num(speed), num(top)
        if s is not None and t:
            out.sample(dev.uuid, "fan_speed", min(1.0, max(0.0, s / t)))
