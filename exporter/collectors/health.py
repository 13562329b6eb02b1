"""Health / identity: the ``info`` series (driver, CUDA, VBIOS, serial, virtualization as labels), the
compute mode, the NVSwitch fabric state and NVML's recovery action.

``up`` is not a sample: the source puts every device's 1/0 in ``Snapshot.up``.

``recovery_action`` is the driver's own verdict (``NVML_FI_DEV_GET_GPU_RECOVERY_ACTION``, drivers
R550+): 0 none, 1 GPU reset, 2 node reboot, 3 drain peer-to-peer, 4 drain and reset (see
docs/metrics.md); absent where the driver does not have the field. ``fabric_state`` is read on GPUs
attached to an NVSwitch fabric (HGX / GB200); where the GPU is not on one it is absent.
"""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice
from gpufleet.exporter.collectors.fields import field_value
from gpufleet.exporter.nvml_query import NA


class HealthCollector(Collector):
    name = "health"

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        d = dev.device
        out.sample(d.uuid, "info", 1, {"driver_version": d.driver_version or "",
                                        "cuda_version": d.cuda_version or "",
                                        "vbios_version": d.vbios_version or "", "serial": d.serial or "",
                                        "virtualization": d.virtualization or ""})
        n = self.nvml
        self.emit(dev, out, "compute_mode", "nvmlDeviceGetComputeMode")
        fid = getattr(n, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", None)
        if fid is not None:
            out.sample(d.uuid, "recovery_action", field_value(self.query, dev, "recovery_action", fid))
        self._fabric(dev, out)

    def _fabric(self, dev: NvmlDevice, out: Emitter) -> None:
        n = self.nvml
        struct = getattr(n, "c_nvmlGpuFabricInfo_t", None)
        if struct is None:
            return
        info: Any = struct()
        got = self.get(dev, "fabric_state", "nvmlDeviceGetGpuFabricInfo", info)
        if got is NA:
            return
        state = int(info.state)
        if state == int(n.NVML_GPU_FABRIC_STATE_NOT_SUPPORTED):
            self.query.mark_unsupported(dev.uuid, "fabric_state")
            return
        out.sample(dev.uuid, "fabric_state", state)
        # registration finished: its result (0 = success) says whether the GPU joined the fabric
        if state == int(n.NVML_GPU_FABRIC_STATE_COMPLETED):
            out.sample(dev.uuid, "fabric_registered", 1 if int(info.status) == 0 else 0)
