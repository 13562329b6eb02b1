"""AMD ECC (RAS): enabled, totals since the driver loaded (correctable, uncorrectable, deferred),
counts by RAS block (UMC, SDMA, GFX, MMHUB, XGMI_WAFL...) and retired (bad) pages."""

from __future__ import annotations

from gpufleet.exporter.amdsmi_query import num
from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice, entry
from gpufleet.exporter.collectors.base import Emitter
from gpufleet.exporter.nvml_query import NA

BLOCKS = ("UMC", "SDMA", "GFX", "MMHUB", "ATHUB", "PCIE_BIF", "HDP", "XGMI_WAFL", "DF", "SMN", "SEM", "MP0",
          "MP1", "FUSE", "MCA", "VCN", "JPEG", "IH", "MPIO")
COUNTS = (("correctable_count", "corrected"), ("uncorrectable_count", "uncorrected"), ("deferred_count", "deferred"))


class AmdEccCollector(AmdCollector):
    name = "ecc"

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        mask = self.get(dev, "ecc_enabled", "amdsmi_get_gpu_ecc_enabled")
        enabled = num(mask) if mask is not NA else None
        if enabled is not None:
            out.sample(dev.uuid, "ecc_enabled", 1 if int(enabled) else 0)
        total = self.get(dev, "ecc_corrected_volatile", "amdsmi_get_gpu_total_ecc_count")
        for key, kind in COUNTS:
            self.put(out, dev, f"ecc_{kind}_volatile", entry(total, key))
        if enabled:
            self._blocks(dev, int(enabled), out)
        pages = self.get(dev, "retired_pages", "amdsmi_get_gpu_bad_page_info")
        if pages is not NA and isinstance(pages, list):
            out.sample(dev.uuid, "retired_pages", len(pages))

    def _blocks(self, dev: AmdDevice, mask: int, out: Emitter) -> None:
        for name in BLOCKS:
            block = self.enum("AmdSmiGpuBlock", name)
            if block is None or not int(block) & mask:
                continue
            label = (("block", name.lower()),)
            got = self.query.call(dev.uuid, f"ecc_block:{name}", "amdsmi_get_gpu_ecc_count", dev.handle, block)
            for key, kind in COUNTS:
                self.put(out, dev, f"ecc_{kind}_block", entry(got, key), labels=label)
