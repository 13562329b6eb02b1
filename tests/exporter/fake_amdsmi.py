"""A scripted fake ``amdsmi`` module (AMD's Python binding), handed to ``AmdSource(amdsmi=fake.module)``.

The real binding cannot even be imported here (libamd_smi.so is absent), so this module re-creates
the names the source uses with the real values: ``AmdSmiLibraryException(err_code)`` with the real
``AMDSMI_STATUS_*`` codes, the ``AmdSmi*`` enums, and the ``amdsmi_*`` functions answering dicts
shaped like the binding's (including its ``"N/A"`` strings), in its units (MHz, W, uW, MB, KB, %).
Script per test: models, unsupported functions, missing functions, a GPU lost mid-run, processes,
XGMI link states, the driver not loaded.
"""

from __future__ import annotations

import enum
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

STATUS_NOT_SUPPORTED = 2
STATUS_FAIL_LOAD_SYMBOL = 5
STATUS_NO_PERM = 10
STATUS_NOT_FOUND = 31
STATUS_NOT_INIT = 32
STATUS_DRIVER_NOT_LOADED = 34


class AmdSmiException(Exception):
    """Base of the binding's errors."""


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int) -> None:
        super().__init__(err_code)
        self.err_code = abs(err_code)
        self.err_info = f"AMDSMI_STATUS_{self.err_code}"

    def get_error_code(self) -> int:
        return self.err_code


class AmdSmiInitFlags(enum.IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_GPUS = 2


class AmdSmiClkType(enum.IntEnum):
    GFX = 0
    DF = 1
    DCEF = 2
    SOC = 3
    MEM = 4
    PCIE = 5
    VCLK0 = 6
    VCLK1 = 7
    DCLK0 = 8
    DCLK1 = 9


class AmdSmiTemperatureType(enum.IntEnum):
    EDGE = 0
    HOTSPOT = 1
    VRAM = 2
    HBM_0 = 3
    HBM_1 = 4
    HBM_2 = 5
    HBM_3 = 6
    PLX = 7


class AmdSmiTemperatureMetric(enum.IntEnum):
    CURRENT = 0
    CRITICAL = 5
    EMERGENCY = 7


class AmdSmiGpuBlock(enum.IntEnum):
    INVALID = 0
    UMC = 1
    SDMA = 2
    GFX = 4
    MMHUB = 8
    ATHUB = 16
    PCIE_BIF = 32
    HDP = 64
    XGMI_WAFL = 128
    DF = 256


class AmdSmiVirtualizationMode(enum.IntEnum):
    UNKNOWN = 0
    BAREMETAL = 1
    HOST = 2
    GUEST = 3
    PASSTHROUGH = 4


# model -> (VRAM MB, XGMI links, functions that answer NOT_SUPPORTED on it)
MODELS: dict[str, dict[str, Any]] = {
    "AMD Instinct MI300X": dict(vram_mb=196_592, xgmi=7, unsupported={"amdsmi_get_gpu_fan_speed"}),
    "AMD Instinct MI250X": dict(vram_mb=65_520, xgmi=6, unsupported={
        "amdsmi_get_gpu_fan_speed", "amdsmi_get_violation_status"}),
    "AMD Radeon PRO W7900": dict(vram_mb=49_136, xgmi=0, unsupported={
        "amdsmi_get_gpu_xgmi_link_status", "amdsmi_gpu_xgmi_error_status", "amdsmi_get_link_metrics",
        "amdsmi_get_violation_status", "amdsmi_get_gpu_ecc_enabled", "amdsmi_get_gpu_total_ecc_count",
        "amdsmi_get_gpu_bad_page_info"}),
}


@dataclass
class FakeAmdGpu:
    uuid: str
    model: str = "AMD Instinct MI300X"
    lost: bool = False
    unsupported: set[str] = field(default_factory=set)
    values: dict[str, Any] = field(default_factory=dict)
    """Overrides by function name (or ``name:arg``), in the binding's units."""
    processes: list[tuple[int, int]] = field(default_factory=list)  # pid, VRAM bytes
    virtualization: str = "BAREMETAL"
    calls: int = 0

    def __post_init__(self) -> None:
        profile = MODELS[self.model]
        self.unsupported = set(profile["unsupported"]) | self.unsupported
        self.vram_mb: int = profile["vram_mb"]
        self.xgmi: int = profile["xgmi"]


class _Handle:
    def __init__(self, gpu: FakeAmdGpu) -> None:
        self.gpu = gpu


class FakeAmdSmi:
    """The scripted state; :attr:`module` is what the source uses as ``amdsmi``."""

    def __init__(self, gpus: list[FakeAmdGpu], missing: set[str] | None = None,
                 driver_loaded: bool = True) -> None:
        self.gpus = gpus
        self.missing = set(missing or ())
        self.driver_loaded = driver_loaded
        self.initialised = 0
        self.calls: Counter[str] = Counter()
        self.handles = {g.uuid: _Handle(g) for g in gpus}
        self.module = self._build()

    def _build(self) -> types.ModuleType:
        mod = types.ModuleType("amdsmi")
        for cls in (AmdSmiException, AmdSmiLibraryException, AmdSmiInitFlags, AmdSmiClkType,
                    AmdSmiTemperatureType, AmdSmiTemperatureMetric, AmdSmiGpuBlock, AmdSmiVirtualizationMode):
            setattr(mod, cls.__name__, cls)
        for name in dir(self):
            if name.startswith("amdsmi_") and name not in self.missing:
                setattr(mod, name, self._wrap(name, getattr(self, name)))
        return mod

    def _wrap(self, fn: str, impl: Any) -> Any:
        def call(*args: Any) -> Any:
            self.calls[fn] += 1
            if fn != "amdsmi_init":
                if not self.initialised:
                    raise AmdSmiLibraryException(STATUS_NOT_INIT)
                h = args[0] if args and isinstance(args[0], _Handle) else None
                if h is not None:
                    h.gpu.calls += 1
                    if h.gpu.lost:
                        raise AmdSmiLibraryException(STATUS_NOT_FOUND)
                    if fn in h.gpu.unsupported:
                        raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
            return impl(*args)
        call.__name__ = fn
        return call

    @staticmethod
    def _v(h: _Handle, key: str, default: Any) -> Any:
        return h.gpu.values.get(key, default)

    # -- library -------------------------------------------------------------------------------
    def amdsmi_init(self, flags: int = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
        if not self.driver_loaded:
            raise AmdSmiLibraryException(STATUS_DRIVER_NOT_LOADED)
        self.initialised += 1

    def amdsmi_shut_down(self) -> None:
        self.initialised = max(0, self.initialised - 1)

    def amdsmi_get_processor_handles(self) -> list[_Handle]:
        return [self.handles[g.uuid] for g in self.gpus]

    def amdsmi_get_processor_handle_from_bdf(self, bdf: str) -> _Handle:
        for g in self.gpus:
            if self._bdf(g) == bdf:
                if g.lost:
                    raise AmdSmiLibraryException(STATUS_NOT_FOUND)
                return self.handles[g.uuid]
        raise AmdSmiLibraryException(STATUS_NOT_FOUND)

    # -- identity ------------------------------------------------------------------------------
    def _bdf(self, g: FakeAmdGpu) -> str:
        return f"0000:{0x80 + self.gpus.index(g):02x}:00.0"

    def amdsmi_get_gpu_device_uuid(self, h: _Handle) -> str:
        return h.gpu.uuid

    def amdsmi_get_gpu_device_bdf(self, h: _Handle) -> str:
        return self._bdf(h.gpu)

    def amdsmi_get_gpu_asic_info(self, h: _Handle) -> dict[str, Any]:
        return {"market_name": h.gpu.model, "vendor_id": "0x1002", "vendor_name": "Advanced Micro Devices Inc.",
                "device_id": "0x74a1", "asic_serial": f"0x{0xA000 + self.gpus.index(h.gpu):016X}",
                "oam_id": "N/A", "num_compute_units": 304, "target_graphics_version": "gfx942"}

    def amdsmi_get_gpu_driver_info(self, h: _Handle) -> dict[str, str]:
        return {"driver_name": "amdgpu", "driver_version": "6.10.5", "driver_date": "2015/01/01 00:00"}

    def amdsmi_get_gpu_vbios_info(self, h: _Handle) -> dict[str, str]:
        return {"name": "AMD MI300X", "build_date": "2024/05/01", "part_number": "113-M3000100-103",
                "version": "022.040.003.043.000001"}

    def amdsmi_get_gpu_virtualization_mode(self, h: _Handle) -> dict[str, Any]:
        return {"mode": AmdSmiVirtualizationMode[h.gpu.virtualization]}

    # -- families ------------------------------------------------------------------------------
    def amdsmi_get_gpu_vram_usage(self, h: _Handle) -> dict[str, int]:
        return {"vram_total": h.gpu.vram_mb, "vram_used": int(self._v(h, "vram_used", 10_240))}

    def amdsmi_get_gpu_activity(self, h: _Handle) -> dict[str, Any]:
        gfx, umc = self._v(h, "activity", (87, 40))
        return {"gfx_activity": gfx, "umc_activity": umc, "mm_activity": "N/A"}

    def amdsmi_get_clock_info(self, h: _Handle, kind: AmdSmiClkType) -> dict[str, Any]:
        clk = {AmdSmiClkType.GFX: (2100, 500, 2100), AmdSmiClkType.MEM: (1300, 900, 1300),
               AmdSmiClkType.VCLK0: (29, 29, 1400)}.get(kind)
        if clk is None:
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
        cur, low, high = self._v(h, f"clock:{kind.name}", clk)
        return {"clk": cur, "min_clk": low, "max_clk": high, "clk_locked": "N/A", "clk_deep_sleep": 0}

    def amdsmi_get_temp_metric(self, h: _Handle, sensor: AmdSmiTemperatureType,
                               metric: AmdSmiTemperatureMetric) -> int:
        temps = {AmdSmiTemperatureType.EDGE: 48, AmdSmiTemperatureType.HOTSPOT: 63}
        if h.gpu.model.startswith("AMD Instinct MI300"):  # no VRAM sensor: per-HBM-stack sensors
            temps |= {AmdSmiTemperatureType.HBM_0: 55, AmdSmiTemperatureType.HBM_1: 57,
                      AmdSmiTemperatureType.HBM_2: 54, AmdSmiTemperatureType.HBM_3: 56}
        else:
            temps[AmdSmiTemperatureType.VRAM] = 52
        if sensor not in temps:
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
        return int(self._v(h, f"temp:{sensor.name}", temps[sensor]))

    def amdsmi_get_gpu_fan_speed(self, h: _Handle, sensor: int) -> int:
        return int(self._v(h, "fan", 102))

    def amdsmi_get_gpu_fan_speed_max(self, h: _Handle, sensor: int) -> int:
        return 255

    def amdsmi_get_power_info(self, h: _Handle) -> dict[str, Any]:
        return {"socket_power": "N/A", "current_socket_power": int(self._v(h, "power", 512)),
                "average_socket_power": "N/A", "gfx_voltage": "N/A", "soc_voltage": "N/A",
                "mem_voltage": "N/A", "power_limit": 750}

    def amdsmi_get_power_cap_info(self, h: _Handle) -> dict[str, int]:
        return {"power_cap": 750_000_000, "default_power_cap": 750_000_000, "dpm_cap": 0,
                "min_power_cap": 0, "max_power_cap": 750_000_000}

    def amdsmi_get_energy_count(self, h: _Handle) -> dict[str, Any]:
        return {"energy_accumulator": int(self._v(h, "energy", 8_000_000)), "counter_resolution": 15.3,
                "timestamp": 1}

    def amdsmi_get_gpu_ecc_enabled(self, h: _Handle) -> int:
        return int(AmdSmiGpuBlock.UMC | AmdSmiGpuBlock.SDMA | AmdSmiGpuBlock.GFX | AmdSmiGpuBlock.XGMI_WAFL)

    def amdsmi_get_gpu_total_ecc_count(self, h: _Handle) -> dict[str, int]:
        c, u, d = self._v(h, "ecc", (4, 0, 1))
        return {"correctable_count": c, "uncorrectable_count": u, "deferred_count": d}

    def amdsmi_get_gpu_ecc_count(self, h: _Handle, block: AmdSmiGpuBlock) -> dict[str, int]:
        if block == AmdSmiGpuBlock.XGMI_WAFL:
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
        c, u, d = self._v(h, f"ecc:{block.name}", (4, 0, 1) if block == AmdSmiGpuBlock.UMC else (0, 0, 0))
        return {"correctable_count": c, "uncorrectable_count": u, "deferred_count": d}

    def amdsmi_get_gpu_bad_page_info(self, h: _Handle) -> list[dict[str, Any]]:
        return [{"value": i, "page_address": 0x1000 * i, "page_size": 4096, "status": "RESERVED"}
                for i in range(int(self._v(h, "bad_pages", 1)))]

    def amdsmi_get_violation_status(self, h: _Handle) -> dict[str, Any]:
        active = self._v(h, "violation", {"active_ppt_pwr": True})
        out: dict[str, Any] = {k: False for k in ("active_prochot_thrm", "active_ppt_pwr", "active_socket_thrm",
                                                  "active_vr_thrm", "active_hbm_thrm")}
        out.update(active)
        out["acc_ppt_pwr"] = 12
        return out

    def amdsmi_get_pcie_info(self, h: _Handle) -> dict[str, Any]:
        return {"pcie_static": {"max_pcie_width": 16, "max_pcie_speed": 32000, "pcie_interface_version": 5,
                                "slot_type": "OAM"},
                "pcie_metric": {"pcie_width": 16, "pcie_speed": int(self._v(h, "pcie_speed", 32000)),
                                "pcie_bandwidth": 512000, "pcie_replay_count": int(self._v(h, "replay", 2)),
                                "pcie_l0_to_recovery_count": 0, "pcie_replay_roll_over_count": 0,
                                "pcie_nak_sent_count": 0, "pcie_nak_received_count": 0,
                                "pcie_lc_perf_other_end_recovery_count": "N/A"}}

    def amdsmi_get_gpu_pci_throughput(self, h: _Handle) -> dict[str, int]:
        return {"sent": 1000, "received": 500, "max_pkt_sz": 256}

    def amdsmi_get_gpu_pci_replay_counter(self, h: _Handle) -> int:
        return int(self._v(h, "replay", 2))

    def amdsmi_get_gpu_xgmi_link_status(self, h: _Handle) -> dict[str, Any]:
        states = list(self._v(h, "xgmi_status", ["U"] * h.gpu.xgmi))
        return {"status": states, "total_links": len(states)}

    def amdsmi_gpu_xgmi_error_status(self, h: _Handle) -> int:
        return int(self._v(h, "xgmi_error", 0))

    def amdsmi_get_link_metrics(self, h: _Handle) -> dict[str, Any]:
        links = [{"bdf": "N/A", "bit_rate": 32, "max_bandwidth": 64, "link_type": 2,
                  "read": 1000 * (i + 1), "write": 2000 * (i + 1)} for i in range(8)]
        return {"num_links": h.gpu.xgmi, "links": links}

    def amdsmi_get_gpu_process_list(self, h: _Handle) -> list[dict[str, Any]]:
        return [{"name": "python", "pid": pid, "mem": mem, "engine_usage": {"gfx": 0, "enc": 0},
                 "memory_usage": {"gtt_mem": 0, "cpu_mem": 0, "vram_mem": mem}, "cu_occupancy": "N/A"}
                for pid, mem in h.gpu.processes]
