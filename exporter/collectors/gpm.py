"""GPM (GPU Performance Monitoring, Hopper and newer): the profiling metrics dcgm-exporter needs the
DCGM daemon for, read straight from NVML.

Each cycle takes one GPM sample per device (nvmlGpmSampleGet, or nvmlGpmMigSampleGet for a MIG
instance) and computes the metrics over the interval since the previous sample (nvmlGpmMetricsGet),
so the first cycle after start emits nothing. Devices where nvmlGpmQueryDeviceSupport says no are
recorded as NotSupported once.
"""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice, make_sample
from gpufleet.exporter.nvml_query import NA

PCT = 0.01
_get, _set = object.__getattribute__, object.__setattr__  # plain ctypes fields, past the binding's str coercion
_NOT_WRITTEN = 0xFFFF  # not an NVML return code
MIB = 1024.0 * 1024.0
METRICS = (("prof_gr_engine_active", "NVML_GPM_METRIC_GRAPHICS_UTIL", PCT),
           ("prof_sm_active", "NVML_GPM_METRIC_SM_UTIL", PCT),
           ("prof_sm_occupancy", "NVML_GPM_METRIC_SM_OCCUPANCY", PCT),
           ("prof_pipe_tensor_active", "NVML_GPM_METRIC_ANY_TENSOR_UTIL", PCT),
           ("prof_pipe_fp64_active", "NVML_GPM_METRIC_FP64_UTIL", PCT),
           ("prof_pipe_fp32_active", "NVML_GPM_METRIC_FP32_UTIL", PCT),
           ("prof_pipe_fp16_active", "NVML_GPM_METRIC_FP16_UTIL", PCT),
           ("prof_dram_active", "NVML_GPM_METRIC_DRAM_BW_UTIL", PCT),
           ("prof_pcie_tx", "NVML_GPM_METRIC_PCIE_TX_PER_SEC", MIB),
           ("prof_pcie_rx", "NVML_GPM_METRIC_PCIE_RX_PER_SEC", MIB),
           ("prof_nvlink_tx", "NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC", MIB),
           ("prof_nvlink_rx", "NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC", MIB))


class GpmCollector(Collector):
    name = "gpm"
    mig = True

    def __init__(self) -> None:
        super().__init__()
        self._supported: dict[str, bool] = {}
        self._samples: dict[str, list[Any]] = {}  # uuid -> [previous, current]
        self._have_prev: set[str] = set()
        self._requests: dict[str, tuple[Any, list[tuple[str, float, Any]]]] = {}

    def _is_supported(self, dev: NvmlDevice) -> bool:
        phys = dev.parent or dev
        if phys.uuid not in self._supported:
            got = self.query.call(phys.uuid, "gpm", "nvmlGpmQueryDeviceSupport", phys.handle)
            ok = got is not NA and bool(got.isSupportedDevice)
            if got is not NA and not ok:
                self.query.mark_unsupported(phys.uuid, "gpm")
            self._supported[phys.uuid] = ok
        return self._supported[phys.uuid]

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        if dev.mig_enabled or not self._is_supported(dev):
            return
        q = self.query
        pair = self._samples.get(dev.uuid)
        if pair is None:
            a = q.call(dev.uuid, "gpm", "nvmlGpmSampleAlloc")
            b = q.call(dev.uuid, "gpm", "nvmlGpmSampleAlloc")
            if a is NA or b is NA:
                return
            pair = self._samples[dev.uuid] = [a, b]
        prev, cur = pair
        if dev.parent is not None:
            got = q.call(dev.uuid, "gpm", "nvmlGpmMigSampleGet", dev.parent.handle, dev.device.mig_gi_id, cur)
        else:
            got = q.call(dev.uuid, "gpm", "nvmlGpmSampleGet", dev.handle, cur)
        if got is NA:
            self._have_prev.discard(dev.uuid)
            return
        if dev.uuid in self._have_prev:
            self._metrics(dev, prev, cur, out)
        pair.reverse()  # the current sample is the next cycle's previous one
        self._have_prev.add(dev.uuid)

    def _request(self, uuid: str) -> tuple[Any, list[tuple[str, float, Any]]]:
        """This device's nvmlGpmMetricsGet request (built once; NVML rewrites every result per call)."""
        got = self._requests.get(uuid)
        if got is None:
            n = self.nvml
            wanted = [(f, getattr(n, c), s) for f, c, s in METRICS if hasattr(n, c)]
            mg = n.c_nvmlGpmMetricsGet_t()
            mg.version = n.NVML_GPM_METRICS_GET_VERSION
            mg.numMetrics = len(wanted)
            for i, (_f, metric_id, _s) in enumerate(wanted):
                mg.metrics[i].metricId = metric_id
            got = self._requests[uuid] = (mg, [(f, s, mg.metrics[i]) for i, (f, _m, s) in enumerate(wanted)])
        return got

    def _metrics(self, dev: NvmlDevice, prev: Any, cur: Any, out: Emitter) -> None:
        mg, results = self._request(dev.uuid)
        for _f, _s, metric in results:
            _set(metric, "nvmlReturn", _NOT_WRITTEN)  # a result NVML did not write is not read as current
        mg.sample1 = prev
        mg.sample2 = cur
        got = self.query.call(dev.uuid, "gpm", "nvmlGpmMetricsGet", mg)
        if got is NA:
            return
        uuid, now, append = dev.uuid, out.now, out.samples.append
        for field_id, scale, metric in results:
            ret = int(_get(metric, "nvmlReturn"))
            if ret == 0:
                append(make_sample(uuid, field_id, float(_get(metric, "value")) * scale, now, ()))
            else:
                self.query.mark_unsupported(uuid, field_id, f"GPM return {ret}")

    def stop(self) -> None:
        if self.q is not None:
            for uuid, pair in self._samples.items():
                for sample in pair:
                    self.q.call(uuid, "gpm", "nvmlGpmSampleFree", sample)
        self._samples.clear()
        self._have_prev.clear()
        self._requests.clear()
