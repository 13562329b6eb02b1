"""Thermal: GPU and memory temperature, slowdown / shutdown / max-operating thresholds, fan speed."""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice
from gpufleet.exporter.collectors.fields import field_value


class ThermalCollector(Collector):
    name = "thermal"

    def __init__(self) -> None:
        super().__init__()
        self._plan: tuple[tuple[str, str, tuple[Any, ...], float], ...] | None = None

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        n = self.nvml
        if self._plan is None:
            self._plan = (
                ("temperature_gpu", "nvmlDeviceGetTemperature", (n.NVML_TEMPERATURE_GPU,), 1.0),
                ("temperature_slowdown", "nvmlDeviceGetTemperatureThreshold",
                 (n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,), 1.0),
                ("temperature_shutdown", "nvmlDeviceGetTemperatureThreshold",
                 (n.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN,), 1.0),
                ("temperature_max_operating", "nvmlDeviceGetTemperatureThreshold",
                 (n.NVML_TEMPERATURE_THRESHOLD_GPU_MAX,), 1.0),
            )
        self.emit_all(dev, out, self._plan)
        out.sample(dev.uuid, "temperature_memory",
                   field_value(self.query, dev, "temperature_memory", n.NVML_FI_DEV_MEMORY_TEMP))
        self.emit(dev, out, "fan_speed", "nvmlDeviceGetFanSpeed", scale=0.01)
