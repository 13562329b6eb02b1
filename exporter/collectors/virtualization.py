"""Virtualization: what a vGPU host and a vGPU guest can say beyond the bare-metal families.

* Every GPU's mode (baremetal, passthrough, vgpu_host, vgpu_guest) is the ``virtualization`` label of
  ``gpufleet_gpu_info`` (read once at discovery by the source).
* vGPU host: the number of active vGPU instances; per instance (label ``vgpu_instance``) framebuffer
  used, SM and memory utilization and the licence state; ``gpufleet_vgpu_info`` ties each instance to
  its VM (vm_id), vGPU type and vGPU UUID (those unbounded ids live only on the info series).
* vGPU guest: the licence state, and one ``gpufleet_gpu_hidden_field_info{field}`` per catalogue
  field NVML refused inside the guest ("hidden by hypervisor": the field is absent, never 0).
"""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice
from gpufleet.exporter.nvml_query import HIDDEN_BY_HYPERVISOR, NA, text

PCT = 0.01
VM_ID_TYPES = {0: "domain_id", 1: "uuid"}


def _util(value: Any) -> float | None:
    """An nvmlValue_t union from nvmlDeviceGetVgpuUtilization (unsigned int percent) or a plain number."""
    v = getattr(value, "uiVal", value)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class VirtualizationCollector(Collector):
    name = "virtualization"
    mig = True  # a guest's MIG instances have hidden fields too

    def __init__(self) -> None:
        super().__init__()
        self._last_ts: dict[str, int] = {}
        self._identity: dict[tuple[str, int], dict[str, str]] = {}

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        mode = dev.device.virtualization
        if mode == "vgpu_guest":
            if not dev.is_mig:
                self._guest_licence(dev, out)
            self._hidden(dev, out)
        elif mode == "vgpu_host" and not dev.is_mig:
            self._host(dev, out)

    # -- guest ---------------------------------------------------------------------------------
    def _guest_licence(self, dev: NvmlDevice, out: Emitter) -> None:
        got = self.get(dev, "vgpu_license_status", "nvmlDeviceGetGridLicensableFeatures")
        if got is NA or not int(got.isGridLicenseSupported):
            return
        count = int(got.licensableFeaturesCount)
        licensed = any(int(got.gridLicensableFeatures[i].featureState) for i in range(count))
        out.sample(dev.uuid, "vgpu_license_status", 1 if licensed else 0)

    def _hidden(self, dev: NvmlDevice, out: Emitter) -> None:
        cat = catalogue()
        hidden = sorted({field.split(":", 1)[0] for (uuid, field), why in list(self.query.unsupported.items())
                         if uuid == dev.uuid and why == HIDDEN_BY_HYPERVISOR})
        for field in hidden:
            if field in cat:
                out.sample(dev.uuid, "hidden_field", 1, (("field", field),))

    # -- host ----------------------------------------------------------------------------------
    def _host(self, dev: NvmlDevice, out: Emitter) -> None:
        ids = self.get(dev, "vgpu_instances", "nvmlDeviceGetActiveVgpus")
        if ids is NA:
            return
        instances = [int(i) for i in ids]
        out.sample(dev.uuid, "vgpu_instances", len(instances))
        for key in [k for k in self._identity if k[0] == dev.uuid and k[1] not in instances]:
            del self._identity[key]  # instance gone: its id may be reused by another VM
        util = self._utilization(dev) if instances else {}
        q = self.query
        for vid in instances:
            lab = (("vgpu_instance", str(vid)),)
            out.sample(dev.uuid, "vgpu_info", 1, {"vgpu_instance": str(vid), **self._ident(dev, vid)})
            out.sample(dev.uuid, "vgpu_memory_used", q.call(dev.uuid, "vgpu_memory_used",
                                                            "nvmlVgpuInstanceGetFbUsage", vid), lab)
            lic = q.call(dev.uuid, "vgpu_licensed", "nvmlVgpuInstanceGetLicenseStatus", vid)
            if lic is not NA:
                out.sample(dev.uuid, "vgpu_licensed", 1 if int(lic) else 0, lab)
            sample = util.get(vid)
            if sample is not None:
                out.sample(dev.uuid, "vgpu_utilization", _util(sample.smUtil), lab, PCT)
                out.sample(dev.uuid, "vgpu_memory_utilization", _util(sample.memUtil), lab, PCT)

    def _ident(self, dev: NvmlDevice, vid: int) -> dict[str, str]:
        key = (dev.uuid, vid)
        got = self._identity.get(key)
        if got is not None:
            return got
        q = self.query
        vm = q.call(dev.uuid, "vgpu_info", "nvmlVgpuInstanceGetVmID", vid)
        vuuid = q.call(dev.uuid, "vgpu_info", "nvmlVgpuInstanceGetUUID", vid)
        tid = q.call(dev.uuid, "vgpu_info", "nvmlVgpuInstanceGetType", vid)
        tname = NA if tid is NA else q.call(dev.uuid, "vgpu_info", "nvmlVgpuTypeGetName", tid)
        got = {"vm_id": "" if vm is NA else text(vm[0]),
               "vm_id_type": "" if vm is NA else VM_ID_TYPES.get(int(vm[1]), str(vm[1])),
               "vgpu_uuid": "" if vuuid is NA else text(vuuid), "vgpu_type": "" if tname is NA else text(tname)}
        self._identity[key] = got
        return got

    def _utilization(self, dev: NvmlDevice) -> dict[int, Any]:
        n = self.nvml
        samples = self.get(dev, "vgpu_utilization", "nvmlDeviceGetVgpuUtilization", self._last_ts.get(dev.uuid, 0),
                           empty=(n.NVML_ERROR_NOT_FOUND,))
        latest: dict[int, Any] = {}
        if samples is NA:
            return latest
        for s in samples:
            vid = int(s.vgpuInstance)
            if vid not in latest or s.timeStamp >= latest[vid].timeStamp:
                latest[vid] = s
            self._last_ts[dev.uuid] = max(self._last_ts.get(dev.uuid, 0), int(s.timeStamp))
        return latest
