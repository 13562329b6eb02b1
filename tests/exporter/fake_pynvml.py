"""A scripted fake ``pynvml`` module, installed at the import boundary (``NvmlSource(nvml=fake.module)``
or ``sys.modules["pynvml"]``).

It re-exports the real nvidia-ml-py constants, structs and error classes (so an unsupported field
raises the real ``NVMLError_NotSupported`` subclass) and replaces the functions with scripted ones
over :class:`FakeGpu` objects. Values are in NVML's own units (MHz, mW, mJ, percent, KiB...), so the
collectors' unit conversions are exercised. Script per test: models, unsupported functions, missing
functions (FunctionNotFound), a GPU lost mid-run, XID events, MIG instances, processes, GPM.
"""

from __future__ import annotations

import queue
import types
from collections import Counter, namedtuple
from dataclasses import dataclass, field
from typing import Any

import pynvml as real

Proc = namedtuple("Proc", "pid usedGpuMemory gpuInstanceId computeInstanceId")
ProcUtil = namedtuple("ProcUtil", "pid timeStamp smUtil memUtil encUtil decUtil")
Util = namedtuple("Util", "gpu memory")
Mem = namedtuple("Mem", "total free used reserved")
MemV1 = namedtuple("MemV1", "total free used")
Bar1 = namedtuple("Bar1", "bar1Total bar1Free bar1Used")
Pci = namedtuple("Pci", "busId")
Violation = namedtuple("Violation", "referenceTime violationTime")
GpmSupport = namedtuple("GpmSupport", "isSupportedDevice")

GIB = 1024 ** 3

# model -> functions that answer NotSupported on it (as real GPUs of that kind do)
MODELS: dict[str, dict[str, Any]] = {
    "NVIDIA H100 80GB HBM3": dict(memory=80 * GIB, nvlinks=18, gpm=True, unsupported={
        "nvmlDeviceGetRetiredPages", "nvmlDeviceGetRetiredPagesPendingStatus", "nvmlDeviceGetFanSpeed",
        "nvmlDeviceGetEncoderUtilization"}),
    "NVIDIA A100-SXM4-40GB": dict(memory=40 * GIB, nvlinks=12, gpm=False, unsupported={
        "nvmlDeviceGetRetiredPages", "nvmlDeviceGetRetiredPagesPendingStatus", "nvmlDeviceGetFanSpeed"}),
    "Tesla T4": dict(memory=16 * GIB, nvlinks=0, gpm=False, unsupported={
        "nvmlDeviceGetRemappedRows", "nvmlDeviceGetMemoryErrorCounter"}),
    "NVIDIA GeForce RTX 4090": dict(memory=24 * GIB, nvlinks=0, gpm=False, unsupported={
        "nvmlDeviceGetEccMode", "nvmlDeviceGetSerial", "nvmlDeviceGetRemappedRows", "nvmlDeviceGetRetiredPages",
        "nvmlDeviceGetRetiredPagesPendingStatus", "nvmlDeviceGetMigMode"}),
}


@dataclass
class FakeMig:
    uuid: str
    gi: int
    ci: int
    profile: str
    memory: int
    used: int = 1 * GIB
    processes: list[tuple[int, int | None]] = field(default_factory=list)


@dataclass
class FakeVgpu:
    """One vGPU instance on a vGPU host (``FakeGpu(values={"virtualization": 3}, vgpus=[...])``)."""

    instance: int
    vm_id: str
    vgpu_uuid: str = ""
    type_name: str = "NVIDIA A100-4C"
    fb_used: int = 2 * GIB
    licensed: int = 1
    sm_util: int = 30
    mem_util: int = 12


@dataclass
class FakeGpu:
    uuid: str
    model: str = "NVIDIA H100 80GB HBM3"
    lost: bool = False
    unsupported: set[str] = field(default_factory=set)
    values: dict[str, Any] = field(default_factory=dict)
    """Overrides, keyed by function name (or ``name:arg``), in NVML's units."""
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    process_util: list[tuple[int, int, int, int]] = field(default_factory=list)  # pid, ts, sm%, mem%
    mig: list[FakeMig] = field(default_factory=list)
    gpm_util: float = 50.0
    calls: int = 0
    vgpus: list[FakeVgpu] = field(default_factory=list)

    def __post_init__(self) -> None:
        profile = MODELS[self.model]
        self.unsupported = set(profile["unsupported"]) | self.unsupported
        self.memory: int = profile["memory"]
        self.nvlinks: int = profile["nvlinks"]
        self.gpm: bool = profile["gpm"]


class _Handle:
    def __init__(self, gpu: FakeGpu, mig: FakeMig | None = None) -> None:
        self.gpu, self.mig = gpu, mig


class FakeNvml:
    """The scripted state; :attr:`module` is what the source imports."""

    def __init__(self, gpus: list[FakeGpu], driver: str = "560.35.03", cuda: int = 12060,
                 missing: set[str] | None = None, library_missing: bool = False) -> None:
        self.gpus = gpus
        self.driver, self.cuda = driver, cuda
        self.missing = set(missing or ())
        self.library_missing = library_missing
        self.initialised = 0
        self.calls: Counter[str] = Counter()
        """How often each NVML function was called (by the source, through the choke point)."""
        self.events: queue.Queue[Any] = queue.Queue()
        self.registered: set[str] = set()
        self.handles = {g.uuid: _Handle(g) for g in gpus}
        self.mig_handles = {m.uuid: _Handle(g, m) for g in gpus for m in g.mig}
        self.vgpu_instances = {v.instance: v for g in gpus for v in g.vgpus}
        self.module = self._build()

    # -- scripting -----------------------------------------------------------------------------
    def xid(self, uuid: str, code: int) -> None:
        """Deliver one XID event to the event set, as the driver would."""
        data = real.c_nvmlEventData_t()
        data.eventType = real.nvmlEventTypeXidCriticalError
        data.eventData = code
        data.gpuInstanceId = 0xFFFFFFFF
        data.computeInstanceId = 0xFFFFFFFF
        self.events.put((self.handles[uuid], data))

    # -- helpers -------------------------------------------------------------------------------
    def _check(self, fn: str, h: _Handle | None) -> None:
        if fn in self.missing:
            raise real.NVMLError_FunctionNotFound()
        if not self.initialised:
            raise real.NVMLError_Uninitialized()
        if h is not None:
            h.gpu.calls += 1
            if h.gpu.lost:
                raise real.NVMLError_GpuIsLost()
            if fn in h.gpu.unsupported:
                raise real.NVMLError_NotSupported()

    def _build(self) -> types.ModuleType:
        mod = types.ModuleType("pynvml")
        for name in dir(real):  # constants, structs and the real error classes; no real functions
            value = getattr(real, name)
            if name.startswith(("NVML", "nvml", "c_nvml", "struct_c_nvml")) and not isinstance(value, types.FunctionType):
                setattr(mod, name, value)
        for name in dir(self):
            if name.startswith("nvml"):
                setattr(mod, name, self._wrap(name, getattr(self, name)))
        return mod

    def _wrap(self, fn: str, impl: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            h = args[0] if args and isinstance(args[0], _Handle) else None
            self.calls[fn] += 1
            if fn not in ("nvmlInit", "nvmlShutdown"):
                self._check(fn, h)
            return impl(*args, **kwargs)
        call.__name__ = fn
        return call

    @staticmethod
    def _v(h: _Handle, key: str, default: Any) -> Any:
        return h.gpu.values.get(key, default)

    # -- system --------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.library_missing:
            raise real.NVMLError_LibraryNotFound()
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised = max(0, self.initialised - 1)

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        return self.handles[self.gpus[index].uuid]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> _Handle:
        h = self.handles[uuid]
        if h.gpu.lost:
            raise real.NVMLError_GpuIsLost()
        return h

    # -- identity ------------------------------------------------------------------------------
    def nvmlDeviceGetUUID(self, h: _Handle) -> str:
        return h.mig.uuid if h.mig else h.gpu.uuid

    def nvmlDeviceGetName(self, h: _Handle) -> str:
        return f"{h.gpu.model} MIG {h.mig.profile}" if h.mig else h.gpu.model

    def nvmlDeviceGetPciInfo(self, h: _Handle) -> Any:
        return Pci(f"00000000:{0x10 + self.gpus.index(h.gpu):02X}:00.0")

    def nvmlDeviceGetVbiosVersion(self, h: _Handle) -> str:
        return "96.00.99.00.01"

    def nvmlDeviceGetSerial(self, h: _Handle) -> str:
        return f"SN{self.gpus.index(h.gpu):010d}"

    def nvmlDeviceGetVirtualizationMode(self, h: _Handle) -> int:
        return int(self._v(h, "virtualization", 0))

    def nvmlDeviceGetGridLicensableFeatures(self, h: _Handle) -> Any:
        feature = types.SimpleNamespace(featureState=int(self._v(h, "vgpu_licensed", 1)))
        return types.SimpleNamespace(isGridLicenseSupported=1, licensableFeaturesCount=1,
                                     gridLicensableFeatures=[feature])

    # -- vGPU (host side) ---------------------------------------------------------------------
    def _vgpu(self, instance: int) -> FakeVgpu:
        v = self.vgpu_instances.get(int(instance))
        if v is None:
            raise real.NVMLError_InvalidArgument()
        return v

    def nvmlDeviceGetActiveVgpus(self, h: _Handle) -> list[int]:
        if int(self._v(h, "virtualization", 0)) not in (3, 4):
            raise real.NVMLError_NotSupported()
        return [v.instance for v in h.gpu.vgpus]

    def nvmlVgpuInstanceGetVmID(self, instance: int) -> tuple[str, int]:
        return self._vgpu(instance).vm_id, real.NVML_VGPU_VM_ID_UUID

    def nvmlVgpuInstanceGetUUID(self, instance: int) -> str:
        v = self._vgpu(instance)
        return v.vgpu_uuid or f"VGPU-{v.instance:08d}"

    def nvmlVgpuInstanceGetType(self, instance: int) -> int:
        return 1000 + self._vgpu(instance).instance

    def nvmlVgpuTypeGetName(self, type_id: int) -> str:
        return self._vgpu(int(type_id) - 1000).type_name

    def nvmlVgpuInstanceGetFbUsage(self, instance: int) -> int:
        return self._vgpu(instance).fb_used

    def nvmlVgpuInstanceGetLicenseStatus(self, instance: int) -> int:
        return self._vgpu(instance).licensed

    def nvmlDeviceGetVgpuUtilization(self, h: _Handle, since: int) -> list[Any]:
        if int(self._v(h, "virtualization", 0)) not in (3, 4):
            raise real.NVMLError_NotSupported()
        value = types.SimpleNamespace
        return [types.SimpleNamespace(vgpuInstance=v.instance, timeStamp=since + 1,
                                      smUtil=value(uiVal=v.sm_util), memUtil=value(uiVal=v.mem_util),
                                      encUtil=value(uiVal=0), decUtil=value(uiVal=0)) for v in h.gpu.vgpus]

    # -- families ------------------------------------------------------------------------------
    def nvmlDeviceGetClockInfo(self, h: _Handle, clock: int) -> int:
        return int(self._v(h, f"clock:{clock}", 1755 if clock == real.NVML_CLOCK_SM else 2619))

    def nvmlDeviceGetMaxClockInfo(self, h: _Handle, clock: int) -> int:
        return int(self._v(h, f"maxclock:{clock}", 1980 if clock == real.NVML_CLOCK_SM else 2619))

    def nvmlDeviceGetPowerUsage(self, h: _Handle) -> int:
        return int(self._v(h, "power", 350_000))

    def nvmlDeviceGetPowerManagementLimit(self, h: _Handle) -> int:
        return 700_000

    def nvmlDeviceGetEnforcedPowerLimit(self, h: _Handle) -> int:
        return 700_000

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: _Handle) -> int:
        return 700_000

    def nvmlDeviceGetTotalEnergyConsumption(self, h: _Handle) -> int:
        return int(self._v(h, "energy", 123_456_000))

    def nvmlDeviceGetPerformanceState(self, h: _Handle) -> int:
        return int(self._v(h, "pstate", 0))

    def nvmlDeviceGetTemperature(self, h: _Handle, sensor: int) -> int:
        return int(self._v(h, "temperature", 61))

    def nvmlDeviceGetTemperatureThreshold(self, h: _Handle, kind: int) -> int:
        return {real.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 92, real.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 89}.get(kind, 87)

    def nvmlDeviceGetFanSpeed(self, h: _Handle) -> int:
        return int(self._v(h, "fan", 30))

    def nvmlDeviceGetFieldValues(self, h: _Handle, ids: list[Any]) -> Any:
        arr = (real.c_nvmlFieldValue_t * len(ids))()
        for i, fid in enumerate(ids):
            fid, scope = fid if isinstance(fid, tuple) else (fid, 0)
            arr[i].fieldId, arr[i].scopeId = fid, scope
            arr[i].valueType = real.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
            if fid == real.NVML_FI_DEV_MEMORY_TEMP and h.gpu.model.startswith(("NVIDIA H", "NVIDIA A")):
                arr[i].value.ullVal = int(self._v(h, "memory_temperature", 70))
            elif fid == real.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION and "recovery_action" not in h.gpu.unsupported:
                arr[i].valueType = real.NVML_VALUE_TYPE_UNSIGNED_INT
                arr[i].value.uiVal = int(self._v(h, "recovery_action", real.NVML_GPU_RECOVERY_ACTION_NONE))
            elif fid in (real.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, real.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX) \
                    and scope < h.gpu.nvlinks:
                arr[i].value.ullVal = 1000 * (scope + 1)
            else:
                arr[i].nvmlReturn = real.NVML_ERROR_NOT_SUPPORTED
        return arr

    def nvmlDeviceGetComputeMode(self, h: _Handle) -> int:
        return int(self._v(h, "compute_mode", real.NVML_COMPUTEMODE_DEFAULT))

    def nvmlDeviceGetGpuFabricInfo(self, h: _Handle, info: Any) -> None:
        """HGX H100s sit on an NVSwitch fabric (registered); other boards have none.
        ``values={"fabric": (state, status)}`` scripts it."""
        on_fabric = h.gpu.model == "NVIDIA H100 80GB HBM3"
        state, status = self._v(h, "fabric", (real.NVML_GPU_FABRIC_STATE_COMPLETED, real.NVML_SUCCESS)
                                if on_fabric else (real.NVML_GPU_FABRIC_STATE_NOT_SUPPORTED, real.NVML_SUCCESS))
        info.state, info.status = state, status

    def nvmlDeviceGetUtilizationRates(self, h: _Handle) -> Any:
        if h.mig:
            raise real.NVMLError_NotSupported()
        return Util(*self._v(h, "utilization", (87, 40)))

    def nvmlDeviceGetEncoderUtilization(self, h: _Handle) -> list[int]:
        return [5, 167000]

    def nvmlDeviceGetDecoderUtilization(self, h: _Handle) -> list[int]:
        return [7, 167000]

    def nvmlDeviceGetMemoryInfo(self, h: _Handle, version: int | None = None) -> Any:
        total = h.mig.memory if h.mig else h.gpu.memory
        used = h.mig.used if h.mig else int(self._v(h, "memory_used", 10 * GIB))
        if version:
            if "nvmlDeviceGetMemoryInfo_v2" in self.missing:
                raise real.NVMLError_FunctionNotFound()
            return Mem(total, total - used - 512 * 2**20, used, 512 * 2**20)
        return MemV1(total, total - used, used)

    def nvmlDeviceGetBAR1MemoryInfo(self, h: _Handle) -> Any:
        return Bar1(256 * 2**20, 250 * 2**20, 6 * 2**20)

    def nvmlDeviceGetEccMode(self, h: _Handle) -> list[int]:
        return [1, 1]

    def nvmlDeviceGetTotalEccErrors(self, h: _Handle, etype: int, ctype: int) -> int:
        return int(self._v(h, f"ecc:{etype}:{ctype}", 0))

    def nvmlDeviceGetMemoryErrorCounter(self, h: _Handle, etype: int, ctype: int, loc: int) -> int:
        if loc in (real.NVML_MEMORY_LOCATION_CBU, real.NVML_MEMORY_LOCATION_TEXTURE_SHM):
            raise real.NVMLError_NotSupported()
        return int(self._v(h, f"ecc_loc:{etype}:{loc}", 0))

    def nvmlDeviceGetRetiredPages(self, h: _Handle, cause: int) -> list[int]:
        return list(self._v(h, f"retired:{cause}", []))

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h: _Handle) -> int:
        return 0

    def nvmlDeviceGetRemappedRows(self, h: _Handle) -> tuple[int, int, int, int]:
        return tuple(self._v(h, "remapped_rows", (2, 0, 0, 0)))  # type: ignore[return-value]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: _Handle) -> int:
        return int(self._v(h, "clock_events", real.nvmlClocksEventReasonSwPowerCap))

    def nvmlDeviceGetViolationStatus(self, h: _Handle, policy: int) -> Any:
        return Violation(1, int(self._v(h, f"violation:{policy}", 2_500_000_000)))

    def nvmlDeviceGetPcieThroughput(self, h: _Handle, counter: int) -> int:
        return 2048 if counter == real.NVML_PCIE_UTIL_TX_BYTES else 1024

    def nvmlDeviceGetPcieReplayCounter(self, h: _Handle) -> int:
        return 3

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: _Handle) -> int:
        return 5

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: _Handle) -> int:
        return 16

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: _Handle) -> int:
        return 5

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: _Handle) -> int:
        return 16

    def nvmlDeviceGetNvLinkState(self, h: _Handle, link: int) -> int:
        if link >= h.gpu.nvlinks:
            raise real.NVMLError_NotSupported() if link == 0 else real.NVMLError_InvalidArgument()
        return 1

    def nvmlDeviceGetNvLinkErrorCounter(self, h: _Handle, link: int, counter: int) -> int:
        return int(self._v(h, f"nvlink_err:{link}:{counter}", 0))

    # -- processes -----------------------------------------------------------------------------
    def nvmlDeviceGetComputeRunningProcesses(self, h: _Handle) -> list[Any]:
        procs = h.mig.processes if h.mig else h.gpu.processes
        return [Proc(pid, mem, 0xFFFFFFFF, 0xFFFFFFFF) for pid, mem in procs]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: _Handle) -> list[Any]:
        return []

    def nvmlDeviceGetProcessUtilization(self, h: _Handle, since: int) -> list[Any]:
        got = [ProcUtil(pid, ts, sm, mem, 0, 0) for pid, ts, sm, mem in h.gpu.process_util if ts > since]
        if not got:
            raise real.NVMLError_NotFound()
        return got

    # -- MIG -----------------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, h: _Handle) -> list[int]:
        on = real.NVML_DEVICE_MIG_ENABLE if h.gpu.mig else real.NVML_DEVICE_MIG_DISABLE
        return [on, on]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: _Handle) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: _Handle, index: int) -> _Handle:
        if index >= len(h.gpu.mig):
            raise real.NVMLError_NotFound()
        return self.mig_handles[h.gpu.mig[index].uuid]

    def nvmlDeviceGetGpuInstanceId(self, h: _Handle) -> int:
        assert h.mig is not None
        return h.mig.gi

    def nvmlDeviceGetComputeInstanceId(self, h: _Handle) -> int:
        assert h.mig is not None
        return h.mig.ci

    # -- events --------------------------------------------------------------------------------
    def nvmlEventSetCreate(self) -> str:
        return "event-set"

    def nvmlDeviceRegisterEvents(self, h: _Handle, types_: int, event_set: Any) -> None:
        self.registered.add(h.gpu.uuid)

    def nvmlEventSetWait(self, event_set: Any, timeout_ms: int) -> Any:
        try:
            handle, data = self.events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise real.NVMLError_Timeout() from None
        holder = types.SimpleNamespace(device=handle, eventType=data.eventType, eventData=data.eventData,
                                       gpuInstanceId=data.gpuInstanceId, computeInstanceId=data.computeInstanceId)
        return holder

    def nvmlEventSetFree(self, event_set: Any) -> None:
        return None

    # -- GPM -----------------------------------------------------------------------------------
    def nvmlGpmQueryDeviceSupport(self, h: _Handle) -> Any:
        return GpmSupport(1 if h.gpu.gpm else 0)

    def nvmlGpmSampleAlloc(self) -> Any:
        return real.c_nvmlGpmSample_t()

    def nvmlGpmSampleGet(self, h: _Handle, sample: Any) -> Any:
        return sample

    def nvmlGpmMigSampleGet(self, h: _Handle, gi: int, sample: Any) -> Any:
        return sample

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        return None

    def nvmlGpmMetricsGet(self, mg: Any) -> Any:
        assert mg.version == real.NVML_GPM_METRICS_GET_VERSION
        for i in range(mg.numMetrics):
            m = mg.metrics[i]
            m.nvmlReturn = 0
            per_sec = m.metricId in (real.NVML_GPM_METRIC_PCIE_TX_PER_SEC, real.NVML_GPM_METRIC_PCIE_RX_PER_SEC,
                                     real.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC,
                                     real.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC)
            m.value = 100.0 if per_sec else 50.0
        return mg

