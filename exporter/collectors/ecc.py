"""ECC: mode, volatile and aggregate totals, counts by memory location, retired pages, row remapping."""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice
from gpufleet.exporter.nvml_query import NA

LOCATIONS = (("l1_cache", "NVML_MEMORY_LOCATION_L1_CACHE"), ("l2_cache", "NVML_MEMORY_LOCATION_L2_CACHE"),
             ("device_memory", "NVML_MEMORY_LOCATION_DEVICE_MEMORY"),
             ("register_file", "NVML_MEMORY_LOCATION_REGISTER_FILE"),
             ("texture_memory", "NVML_MEMORY_LOCATION_TEXTURE_MEMORY"),
             ("texture_shm", "NVML_MEMORY_LOCATION_TEXTURE_SHM"), ("cbu", "NVML_MEMORY_LOCATION_CBU"),
             ("sram", "NVML_MEMORY_LOCATION_SRAM"))


class EccCollector(Collector):
    name = "ecc"

    def __init__(self) -> None:
        super().__init__()
        self._plan: tuple[tuple[tuple[str, str, tuple[Any, ...], float], ...],
                          tuple[tuple[str, str, tuple[Any, ...], tuple[tuple[str, str], ...]], ...]] | None = None

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        mode = self.get(dev, "ecc_enabled", "nvmlDeviceGetEccMode")
        if mode is not NA:
            current = int(mode[0])
            out.sample(dev.uuid, "ecc_enabled", current)
            if current:
                self._counters(dev, out)
        self._retired(dev, out)
        rows = self.get(dev, "remapped_rows", "nvmlDeviceGetRemappedRows")
        if rows is not NA:
            corr, unc, pending, failure = rows
            out.sample(dev.uuid, "remapped_rows_correctable", corr)
            out.sample(dev.uuid, "remapped_rows_uncorrectable", unc)
            out.sample(dev.uuid, "row_remap_pending", 1 if pending else 0)
            out.sample(dev.uuid, "row_remap_failure", 1 if failure else 0)

    def _counters(self, dev: NvmlDevice, out: Emitter) -> None:
        if self._plan is None:
            n = self.nvml
            corr, unc = n.NVML_MEMORY_ERROR_TYPE_CORRECTED, n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
            totals = tuple((field_id, "nvmlDeviceGetTotalEccErrors", (etype, ctype), 1.0) for field_id, etype, ctype in (
                ("ecc_corrected_volatile", corr, n.NVML_VOLATILE_ECC),
                ("ecc_uncorrected_volatile", unc, n.NVML_VOLATILE_ECC),
                ("ecc_corrected_aggregate", corr, n.NVML_AGGREGATE_ECC),
                ("ecc_uncorrected_aggregate", unc, n.NVML_AGGREGATE_ECC)))
            by_location: tuple[tuple[str, str, tuple[Any, ...], tuple[tuple[str, str], ...]], ...] = tuple((field_id, f"{field_id}:{label}", (etype, n.NVML_AGGREGATE_ECC, loc), (("location", label),))
                                for field_id, etype in (("ecc_corrected_location", corr), ("ecc_uncorrected_location", unc))
                                for label, const in LOCATIONS if (loc := getattr(n, const, None)) is not None)
            self._plan = (totals, by_location)
        totals, by_location = self._plan
        self.emit_all(dev, out, totals)
        read, uuid, handle = self.query.read, dev.uuid, dev.handle
        for field_id, key, args, labels in by_location:
            value = read(uuid, key, "nvmlDeviceGetMemoryErrorCounter", handle, *args)
            out.sample(uuid, field_id, value, labels)

    def _retired(self, dev: NvmlDevice, out: Emitter) -> None:
        n = self.nvml
        for field_id, cause in (("retired_pages_sbe", n.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS),
                                ("retired_pages_dbe", n.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)):
            pages = self.get(dev, field_id, "nvmlDeviceGetRetiredPages", cause)
            if pages is not NA:
                out.sample(dev.uuid, field_id, len(pages))
        pending = self.get(dev, "retired_pages_pending", "nvmlDeviceGetRetiredPagesPendingStatus")
        if pending is not NA:
            out.sample(dev.uuid, "retired_pages_pending", 1 if pending else 0)
