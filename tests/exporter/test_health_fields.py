"""Compute mode, NVSwitch fabric state and NVML's recovery action (health collector) over the fake pynvml."""

from __future__ import annotations

import pynvml
from gpufleet.exporter.sources.nvml import NvmlSource

from tests.exporter.fake_pynvml import FakeGpu, FakeNvml

H100, T4 = "NVIDIA H100 80GB HBM3", "Tesla T4"


def collect(fake: FakeNvml, cycles: int = 1) -> list:
    with NvmlSource(nvml=fake.module, collectors=["health"], xid_wait_ms=20) as src:
        return [src.collect(float(t)) for t in range(cycles)]


def test_recovery_action_compute_mode_and_fabric() -> None:
    fake = FakeNvml([
        FakeGpu("GPU-ok", H100),
        FakeGpu("GPU-reboot", H100, values={"recovery_action": pynvml.NVML_GPU_RECOVERY_ACTION_NODE_REBOOT,
                                            "compute_mode": pynvml.NVML_COMPUTEMODE_EXCLUSIVE_PROCESS,
                                            "fabric": (pynvml.NVML_GPU_FABRIC_STATE_COMPLETED,
                                                       pynvml.NVML_ERROR_UNKNOWN)}),
        FakeGpu("GPU-t4", T4),
    ])
    (snap,) = collect(fake)
    v = snap.value
    assert v("GPU-ok", "recovery_action") == 0
    assert v("GPU-reboot", "recovery_action") == 2
    assert v("GPU-ok", "compute_mode") == 0 and v("GPU-reboot", "compute_mode") == 3
    assert v("GPU-ok", "fabric_state") == 3 and v("GPU-ok", "fabric_registered") == 1
    assert v("GPU-reboot", "fabric_registered") == 0  # completed with an error: not on the fabric
    # a PCIe board on no fabric: absent, never 0
    assert v("GPU-t4", "fabric_state") is None and v("GPU-t4", "fabric_registered") is None
    assert all(s.success for s in snap.stats)


def test_fabric_in_progress_has_no_registered_verdict() -> None:
    fake = FakeNvml([FakeGpu("GPU-a", H100, values={"fabric": (pynvml.NVML_GPU_FABRIC_STATE_IN_PROGRESS, 0)})])
    (snap,) = collect(fake)
    assert snap.value("GPU-a", "fabric_state") == 2
    assert snap.value("GPU-a", "fabric_registered") is None


def test_driver_without_recovery_field_or_fabric_call_absent_and_asked_once() -> None:
    fake = FakeNvml([FakeGpu("GPU-a", H100, unsupported={"recovery_action"})],
                    missing={"nvmlDeviceGetGpuFabricInfo"})
    snaps = collect(fake, cycles=3)
    for snap in snaps:
        assert snap.value("GPU-a", "recovery_action") is None
        assert snap.value("GPU-a", "fabric_state") is None
        assert snap.value("GPU-a", "compute_mode") == 0
        assert all(s.success for s in snap.stats)
    assert fake.calls["nvmlDeviceGetFieldValues"] == 1  # refused once, not asked again
    assert fake.calls["nvmlDeviceGetGpuFabricInfo"] == 1


def test_no_fabric_asked_once() -> None:
    fake = FakeNvml([FakeGpu("GPU-t4", T4)])
    collect(fake, cycles=3)
    assert fake.calls["nvmlDeviceGetGpuFabricInfo"] == 1
