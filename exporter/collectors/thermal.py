"""Thermal: GPU and memory temperature, slowdown / shutdown / max-operating thresholds, fan speed."""

from __future__ import annotations

from exporter.collectors.base import Collector, Emitter, NvmlDevice
from exporter.collectors.fields import field_value


class ThermalCollector(Collector):
    name = "thermal"

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        n = self.nvml
        self.emit(dev, out, "temperature_gpu", "nvmlDeviceGetTemperature", n.NVML_TEMPERATURE_GPU)
        for field_id, threshold in (("temperature_slowdown", n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN),
                                    ("temperature_shutdown", n.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN),
                                    ("temperature_max_operating", n.NVML_TEMPERATURE_THRESHOLD_GPU_MAX)):
            self.emit(dev, out, field_id, "nvmlDeviceGetTemperatureThreshold", threshold)
        out.sample(dev.uuid, "temperature_memory",
                   field_value(self.query, dev, "temperature_memory", n.NVML_FI_DEV_MEMORY_TEMP))
        self.emit(dev, out, "fan_speed", "nvmlDeviceGetFanSpeed", scale=0.01)
