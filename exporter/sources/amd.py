"""The AMD source: AMD GPUs through AMD's official Python library ``amdsmi`` (ROCm's libamd_smi.so).

``open()`` loads and initialises the library (GPUs only), finds the GPUs and starts the collectors;
``collect(now)`` runs every collector over every device that answers. Samples use the same catalogue
fields as NVML's and the devices carry ``vendor="amd"``; fields AMD lacks are absent. A device whose
calls answer "device not found" is marked down (``up`` 0, one GPU_LOST event, none of its samples) and
probed by PCI address on later cycles. Every amdsmi call goes through
:class:`exporter.amdsmi_query.AmdQuery`.

When the library is missing (``import amdsmi`` fails because libamd_smi.so is not installed, as on a
machine without ROCm) or ``amdsmi_init`` fails, ``open()`` raises ``SourceUnavailable`` with one line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
from pathlib import Path
from typing import Any

from gpufleet.exporter.amdsmi_query import AmdQuery, entry_text, num
from gpufleet.exporter.collectors import registry as nvml_registry
from gpufleet.exporter.collectors.amd import amd_registry
from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice, entry
from gpufleet.exporter.collectors.amd.pcie import AmdPcieCollector
from gpufleet.exporter.collectors.amd.processes import AmdProcessesCollector
from gpufleet.exporter.collectors.base import Emitter
from gpufleet.exporter.errors import ConfigError, SourceUnavailable
from gpufleet.exporter.nvml_query import NA, GpuLost
from gpufleet.exporter.schema import Device, Event, EventKind
from gpufleet.exporter.sources.driver import DriverSource

log = logging.getLogger(__name__)

NO_LIBRARY = ("AMD SMI library not available ({err}); install ROCm's amd-smi-lib (libamd_smi.so) "
              "on AMD nodes, or use --source twin to run on the simulated fleet")
NO_DRIVER = "AMD SMI could not start ({err}): no amdgpu driver loaded; use --source twin to run on the simulated fleet"
VIRTUALIZATION = {"BAREMETAL": "baremetal", "PASSTHROUGH": "passthrough", "HOST": "vgpu_host",
                  "GUEST": "vgpu_guest"}
MB = 2 ** 20
STATUS_FAIL_LOAD_MODULE, STATUS_INIT_ERROR, STATUS_DRIVER_NOT_LOADED = 4, 18, 34


def load_amdsmi() -> Any:
    """``import amdsmi`` quietly; SourceUnavailable with one line when the library cannot load.

    The binding prints to stdout and raises KeyError (not ImportError) when libamd_smi.so is missing.
    """
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            import amdsmi
    except Exception as exc:  # ImportError, OSError, KeyError('libamd_smi.so')...
        why = "libamd_smi.so not found" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise SourceUnavailable(NO_LIBRARY.format(err=why)) from None
    return amdsmi


class AmdSource(DriverSource):
    """Telemetry from the AMD GPUs of this machine."""

    name = "amd"
    vendor_label = "AMD GPU"

    def __init__(self, collectors: list[str] | None = None, node: str | None = None,
                 proc_root: Path = Path("/proc"), amdsmi: Any = None, log_root: Path = Path("/var/log"),
                 pcie_throughput: bool = False) -> None:
        known = amd_registry()
        if collectors is None:
            names = list(known)
        else:
            unknown = [c for c in collectors if c not in known and c not in nvml_registry()]
            if unknown:
                raise ConfigError(f"unknown collector(s) {', '.join(unknown)}; choose from "
                                  f"{', '.join(dict.fromkeys([*nvml_registry(), *known]))}")
            names = [c for c in collectors if c in known]  # NVIDIA-only families (nvlink, gpm...) skipped
        self.collector_names = names
        self.node = node or socket.gethostname()
        self.proc_root, self.log_root = Path(proc_root), Path(log_root)
        self.pcie_throughput = pcie_throughput
        self._amdsmi = amdsmi
        super().__init__()

    # -- lifecycle -----------------------------------------------------------------------------
    def _start_library(self) -> AmdQuery:
        lib = self._amdsmi if self._amdsmi is not None else load_amdsmi()
        flags = getattr(lib, "AmdSmiInitFlags", None)
        try:
            if flags is not None and hasattr(flags, "INIT_AMD_GPUS"):
                lib.amdsmi_init(flags.INIT_AMD_GPUS)
            else:
                lib.amdsmi_init()
        except Exception as exc:
            code = abs(int(getattr(exc, "err_code", 0) or 0))
            text = " ".join(str(getattr(exc, "err_info", "") or exc).split())
            if code in (STATUS_DRIVER_NOT_LOADED, STATUS_FAIL_LOAD_MODULE, STATUS_INIT_ERROR):
                raise SourceUnavailable(NO_DRIVER.format(err=text)) from None
            raise SourceUnavailable(f"AMD SMI failed to start: {text}") from None
        return AmdQuery(lib)

    def _make(self, name: str) -> AmdCollector:
        cls = amd_registry()[name]
        if cls is AmdProcessesCollector:
            return AmdProcessesCollector(self.proc_root, self.log_root)
        if cls is AmdPcieCollector:
            return AmdPcieCollector(self.pcie_throughput)
        return cls()

    def _stop_library(self) -> None:
        try:
            self.query.amdsmi.amdsmi_shut_down()
        except Exception as exc:
            log.debug("amdsmi_shut_down: %s", exc)

    # -- inventory -----------------------------------------------------------------------------
    def _discover(self) -> list[AmdDevice]:
        q = self.query
        assert q is not None
        handles = q.system("amdsmi_get_processor_handles")
        if handles is NA:
            raise SourceUnavailable("AMD SMI started but could not list the GPUs")
        out: list[AmdDevice] = []
        for index, h in enumerate(handles):
            key = f"amd-index-{index}"
            try:
                uuid = entry_text(q.call(key, "uuid", "amdsmi_get_gpu_device_uuid", h)) or key
                out.append(AmdDevice(self._identity(h, index, uuid), h))
            except GpuLost as exc:
                log.error("AMD GPU %d is lost at start: %s", index, exc.reason)
                dev = Device(uuid=f"AMD-lost-index-{index}", index=index, node=self.node, model="unknown",
                             vendor="amd")
                out.append(AmdDevice(dev, None, lost=True))
        return out

    def _identity(self, h: Any, index: int, uuid: str) -> Device:
        q = self.query
        assert q is not None

        def opt(field: str, fn: str) -> Any:
            return q.call(uuid, field, fn, h)

        bdf = entry_text(opt("pci", "amdsmi_get_gpu_device_bdf")) or ""
        asic = opt("asic", "amdsmi_get_gpu_asic_info")
        driver = opt("driver", "amdsmi_get_gpu_driver_info")
        vbios = opt("vbios", "amdsmi_get_gpu_vbios_info")
        vram = opt("memory_total", "amdsmi_get_gpu_vram_usage")
        virt = opt("virtualization", "amdsmi_get_gpu_virtualization_mode")
        mode = entry(virt, "mode")
        total = num(entry(vram, "vram_total"))
        return Device(
            uuid=uuid, index=index, node=self.node, vendor="amd",
            model=entry_text(entry(asic, "market_name")) or "AMD GPU", pci_bus_id=bdf,
            memory_total_bytes=None if total is None else int(total * MB),
            driver_version=entry_text(entry(driver, "driver_version")),
            vbios_version=entry_text(entry(vbios, "version")),
            serial=entry_text(entry(asic, "asic_serial")),
            virtualization=None if mode is None else VIRTUALIZATION.get(getattr(mode, "name", str(mode))),
        )

    # -- collection ----------------------------------------------------------------------------
    def _probe_lost(self, out: Emitter) -> None:
        q = self.query
        assert q is not None
        for dev in self._devices:
            if not dev.lost or not dev.device.pci_bus_id:
                continue
            try:
                h = q.call(dev.uuid, "recovery", "amdsmi_get_processor_handle_from_bdf", dev.device.pci_bus_id)
                ok = h is not NA and q.call(dev.uuid, "recovery", "amdsmi_get_gpu_device_uuid", h) is not NA
            except GpuLost:
                ok = False
            q.unsupported.pop((dev.uuid, "recovery"), None)
            if not ok:
                continue
            q.forget_device(dev.uuid)
            dev.handle, dev.lost = h, False
            out.event(Event(ts=out.now, kind=EventKind.GPU_RECOVERED, uuid=dev.uuid, node=self.node))
            log.warning("AMD GPU %s answers again", dev.uuid)

