"""Utilization: GPU and memory-controller busy share, encoder and decoder (percent -> ratio)."""

from __future__ import annotations

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice
from gpufleet.exporter.nvml_query import NA

PCT = 0.01


class UtilizationCollector(Collector):
    name = "utilization"
    mig = True  # NVML answers NotSupported on MIG instances; the series are then left out

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        rates = self.get(dev, "util_gpu", "nvmlDeviceGetUtilizationRates")
        if rates is not NA:
            out.sample(dev.uuid, "util_gpu", rates.gpu, scale=PCT)
            out.sample(dev.uuid, "util_memory", rates.memory, scale=PCT)
        for field_id, fn in (("util_encoder", "nvmlDeviceGetEncoderUtilization"),
                             ("util_decoder", "nvmlDeviceGetDecoderUtilization")):
            got = self.get(dev, field_id, fn)
            if got is not NA:
                out.sample(dev.uuid, field_id, got[0], scale=PCT)
