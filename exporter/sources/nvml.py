"""The NVML source: real GPUs through nvidia-ml-py (import name ``pynvml``).

``open()`` initialises NVML, finds the GPUs (and their MIG instances) and starts the collectors (the
XID collector starts its event thread). ``collect(now)`` runs every collector over every device that
answers; a device that returns GPU_IS_LOST is marked down (``Snapshot.up[uuid] = 0``, one GPU_LOST
event, none of its samples) and probed for recovery on later cycles, while the other GPUs keep
reporting. Every NVML call goes through :class:`exporter.nvml_query.NvmlQuery`.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

from gpufleet.exporter.collectors import registry
from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice
from gpufleet.exporter.collectors.processes import ProcessesCollector
from gpufleet.exporter.collectors.xid import XidCollector
from gpufleet.exporter.errors import ConfigError, SourceUnavailable
from gpufleet.exporter.nvml_query import NA, GpuLost, NvmlQuery, text
from gpufleet.exporter.schema import Device, Event, EventKind
from gpufleet.exporter.sources.driver import DriverSource

log = logging.getLogger(__name__)

NO_DRIVER = ("no NVIDIA driver found on this machine (NVML: {err}); "
             "use --source twin to run on the simulated fleet")
VIRTUALIZATION = {0: "baremetal", 1: "passthrough", 2: "vgpu_guest", 3: "vgpu_host", 4: "vgpu_host"}


def _cuda_version(value: Any) -> str | None:
    if value is NA or value is None:
        return None
    v = int(value)
    return f"{v // 1000}.{(v % 1000) // 10}"


def _mig_profile(name: str, attrs: Any) -> str:
    """``1g.10gb`` from "NVIDIA H100 80GB HBM3 MIG 1g.10gb", else from the instance attributes."""
    if " MIG " in name:
        return name.rsplit(" MIG ", 1)[1].strip()
    if attrs is not NA:
        return f"{int(attrs.gpuInstanceSliceCount)}g.{round(int(attrs.memorySizeMB) / 1024)}gb"
    return ""


class NvmlSource(DriverSource):
    """Telemetry from the NVIDIA GPUs of this machine."""

    name = "nvml"
    vendor_label = "GPU"

    def __init__(self, collectors: list[str] | None = None, node: str | None = None,
                 proc_root: Path = Path("/proc"), nvml: Any = None, log_root: Path = Path("/var/log"),
                 xid_wait_ms: int = 500) -> None:
        known = registry()
        names = list(known) if collectors is None else list(collectors)
        unknown = [c for c in names if c not in known]
        if unknown:
            raise ConfigError(f"unknown collector(s) {', '.join(unknown)}; choose from {', '.join(known)}")
        self.collector_names = names
        self.node = node or socket.gethostname()
        self.proc_root = Path(proc_root)
        self.log_root = Path(log_root)
        self.xid_wait_ms = xid_wait_ms
        self._nvml = nvml
        super().__init__()

    # -- lifecycle -----------------------------------------------------------------------------
    def _load(self) -> Any:
        if self._nvml is not None:
            return self._nvml
        try:
            import pynvml
        except ImportError as exc:  # pragma: no cover - nvidia-ml-py is a dependency
            raise SourceUnavailable(f"nvidia-ml-py is not installed ({exc}); use --source twin") from None
        return pynvml

    def _start_library(self) -> NvmlQuery:
        nvml = self._load()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code in (nvml.NVML_ERROR_LIBRARY_NOT_FOUND, nvml.NVML_ERROR_DRIVER_NOT_LOADED):
                raise SourceUnavailable(NO_DRIVER.format(err=exc)) from None
            raise SourceUnavailable(f"NVML failed to start: {exc}") from None
        return NvmlQuery(nvml)

    def _make(self, name: str) -> Collector:
        cls = registry()[name]
        if cls is ProcessesCollector:
            return ProcessesCollector(self.proc_root, self.log_root)
        if cls is XidCollector:
            return XidCollector(self.xid_wait_ms)
        return cls()

    def _stop_library(self) -> None:
        try:
            self.query.nvml.nvmlShutdown()
        except self.query.nvml.NVMLError as exc:
            log.debug("nvmlShutdown: %s", exc)

    # -- inventory -----------------------------------------------------------------------------
    def _discover(self) -> list[NvmlDevice]:
        q = self.query
        assert q is not None
        count = q.system("nvmlDeviceGetCount")
        if count is NA:
            raise SourceUnavailable("NVML started but could not count the GPUs")
        driver = q.system("nvmlSystemGetDriverVersion")
        cuda = _cuda_version(q.system("nvmlSystemGetCudaDriverVersion"))
        out: list[NvmlDevice] = []
        for index in range(int(count)):
            key = f"index-{index}"
            try:
                handle = q.call(key, "handle", "nvmlDeviceGetHandleByIndex", index)
                if handle is NA:
                    continue
                uuid = text(q.call(key, "uuid", "nvmlDeviceGetUUID", handle))
                out.extend(self._physical(handle, index, uuid, None if driver is NA else text(driver), cuda))
            except GpuLost as exc:
                log.error("GPU %d is lost at start: %s", index, exc.reason)
                dev = Device(uuid=f"GPU-lost-index-{index}", index=index, node=self.node, model="unknown")
                out.append(NvmlDevice(dev, None, lost=True))
        return out

    def _physical(self, handle: Any, index: int, uuid: str, driver: str | None,
                  cuda: str | None) -> list[NvmlDevice]:
        q = self.query
        assert q is not None

        def opt(field: str, fn: str, *args: Any) -> Any:
            return q.call(uuid, field, fn, handle, *args)

        virt = opt("virtualization", "nvmlDeviceGetVirtualizationMode")
        if virt is not NA and VIRTUALIZATION.get(int(virt)) == "vgpu_guest":
            q.guests.add(uuid)  # what NVML refuses from here on is hidden by the hypervisor
        pci = opt("pci", "nvmlDeviceGetPciInfo")
        mem = opt("memory_total", "nvmlDeviceGetMemoryInfo")
        vbios, serial = opt("vbios", "nvmlDeviceGetVbiosVersion"), opt("serial", "nvmlDeviceGetSerial")
        mig = opt("mig_mode", "nvmlDeviceGetMigMode")
        mig_enabled = mig is not NA and int(mig[0]) == int(q.nvml.NVML_DEVICE_MIG_ENABLE)
        dev = Device(
            uuid=uuid, index=index, node=self.node, model=text(opt("name", "nvmlDeviceGetName") or "unknown"),
            pci_bus_id="" if pci is NA else text(pci.busId), memory_total_bytes=None if mem is NA else int(mem.total),
            driver_version=driver, cuda_version=cuda, vbios_version=None if vbios is NA else text(vbios),
            serial=None if serial is NA else text(serial),
            virtualization=None if virt is NA else VIRTUALIZATION.get(int(virt)),
        )
        parent = NvmlDevice(dev, handle, mig_enabled=mig_enabled)
        out = [parent]
        if mig_enabled:
            out.extend(self._mig_instances(parent))
        return out

    def _mig_instances(self, parent: NvmlDevice) -> list[NvmlDevice]:
        q = self.query
        assert q is not None
        n = q.nvml
        out: list[NvmlDevice] = []
        slots = q.call(parent.uuid, "mig_count", "nvmlDeviceGetMaxMigDeviceCount", parent.handle)
        for slot in range(0 if slots is NA else int(slots)):
            h = q.call(parent.uuid, f"mig:{slot}", "nvmlDeviceGetMigDeviceHandleByIndex", parent.handle, slot,
                       empty=(n.NVML_ERROR_NOT_FOUND, n.NVML_ERROR_INVALID_ARGUMENT))
            if h is NA:
                continue
            uuid = text(q.call(parent.uuid, f"mig:{slot}", "nvmlDeviceGetUUID", h))
            if parent.uuid in q.guests:
                q.guests.add(uuid)
            gi = q.call(uuid, "gi", "nvmlDeviceGetGpuInstanceId", h)
            ci = q.call(uuid, "ci", "nvmlDeviceGetComputeInstanceId", h)
            name = q.call(uuid, "name", "nvmlDeviceGetName", h)
            mem = q.call(uuid, "memory_total", "nvmlDeviceGetMemoryInfo", h)
            attrs = NA if (name is not NA and " MIG " in text(name)) else q.call(
                uuid, "attributes", "nvmlDeviceGetAttributes", h)
            p = parent.device
            dev = Device(uuid=uuid, index=p.index, node=self.node, model=p.model, pci_bus_id=p.pci_bus_id,
                         memory_total_bytes=None if mem is NA else int(mem.total),
                         driver_version=p.driver_version, cuda_version=p.cuda_version,
                         vbios_version=p.vbios_version, serial=p.serial, mig_parent_uuid=p.uuid,
                         mig_gi_id=None if gi is NA else int(gi), mig_ci_id=None if ci is NA else int(ci),
                         mig_profile=_mig_profile("" if name is NA else text(name), attrs),
                         virtualization=p.virtualization)
            out.append(NvmlDevice(dev, h, parent=parent))
        return out

    # -- collection ----------------------------------------------------------------------------
    def _family(self, dev: NvmlDevice) -> list[NvmlDevice]:
        """A device and everything that shares its fate (the physical GPU and its MIG instances)."""
        root = dev.parent or dev
        return [d for d in self._devices if d is root or d.parent is root]

    def _probe_lost(self, out: Emitter) -> None:
        q = self.query
        assert q is not None
        for dev in self._devices:
            if not dev.lost or dev.parent is not None or dev.device.uuid.startswith("GPU-lost-index-"):
                continue
            try:
                h = q.call(dev.uuid, "recovery", "nvmlDeviceGetHandleByUUID", dev.uuid)
                ok = h is not NA and q.call(dev.uuid, "recovery", "nvmlDeviceGetUUID", h) is not NA
            except GpuLost:
                ok = False
            q.unsupported.pop((dev.uuid, "recovery"), None)
            if not ok:
                continue
            q.forget_device(dev.uuid)
            dev.handle = h
            for d in self._family(dev):
                d.lost = False
                out.event(Event(ts=out.now, kind=EventKind.GPU_RECOVERED, uuid=d.uuid, node=self.node))
            log.warning("GPU %s answers again", dev.uuid)

    def _skip(self, dev: NvmlDevice, collector: Collector) -> bool:
        return dev.lost or (dev.is_mig and not collector.mig)

    # -- introspection (the hardware check and `gpufleet devices`) -----------------------------
    def collector(self, name: str) -> Collector | None:
        return next((c for c in self.collectors if c.name == name), None)
