"""Virtualization awareness from NVML over scripted vGPU answers of the fake pynvml (no vGPU here)."""

from __future__ import annotations

import pytest
from gpufleet.exporter.nvml_query import HIDDEN_BY_HYPERVISOR
from gpufleet.exporter.sources.nvml import NvmlSource

from tests.exporter.fake_pynvml import GIB, FakeGpu, FakeNvml, FakeVgpu

A100, H100 = "NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3"
BAREMETAL, PASSTHROUGH, GUEST, HOST = 0, 1, 2, 3


def _info(snap, uuid: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(next(s.labels for s in snap.samples if s.uuid == uuid and s.field == "info"))


def test_mode_label_for_every_gpu() -> None:
    fake = FakeNvml([FakeGpu("GPU-bm", A100), FakeGpu("GPU-pt", A100, values={"virtualization": PASSTHROUGH}),
                     FakeGpu("GPU-host", A100, values={"virtualization": HOST}),
                     FakeGpu("GPU-guest", H100, values={"virtualization": GUEST})])
    with NvmlSource(nvml=fake.module, collectors=["health"]) as src:
        snap = src.collect(1.0)
    modes = {u: _info(snap, u)["virtualization"] for u in ("GPU-bm", "GPU-pt", "GPU-host", "GPU-guest")}
    assert modes == {"GPU-bm": "baremetal", "GPU-pt": "passthrough", "GPU-host": "vgpu_host",
                     "GPU-guest": "vgpu_guest"}


def test_vgpu_host_reports_each_instance_and_its_vm() -> None:
    vgpus = [FakeVgpu(11, "vm-aaaa", type_name="NVIDIA A100-10C", fb_used=3 * GIB, sm_util=30, mem_util=12),
             FakeVgpu(12, "vm-bbbb", type_name="NVIDIA A100-10C", fb_used=GIB, licensed=0, sm_util=0, mem_util=0)]
    fake = FakeNvml([FakeGpu("GPU-host", A100, values={"virtualization": HOST}, vgpus=vgpus)])
    with NvmlSource(nvml=fake.module, collectors=["virtualization"]) as src:
        snap = src.collect(1.0)
        src.collect(2.0)
    v = snap.value
    assert v("GPU-host", "vgpu_instances") == 2
    lab11, lab12 = (("vgpu_instance", "11"),), (("vgpu_instance", "12"),)
    assert v("GPU-host", "vgpu_memory_used", lab11) == 3 * GIB and v("GPU-host", "vgpu_memory_used", lab12) == GIB
    assert v("GPU-host", "vgpu_utilization", lab11) == pytest.approx(0.30)
    assert v("GPU-host", "vgpu_memory_utilization", lab11) == pytest.approx(0.12)
    assert v("GPU-host", "vgpu_utilization", lab12) == 0.0  # idle VM: a real 0, not a missing field
    assert v("GPU-host", "vgpu_licensed", lab11) == 1 and v("GPU-host", "vgpu_licensed", lab12) == 0
    infos = [dict(s.labels) for s in snap.samples if s.field == "vgpu_info"]
    assert {i["vgpu_instance"]: i["vm_id"] for i in infos} == {"11": "vm-aaaa", "12": "vm-bbbb"}
    assert infos[0]["vgpu_type"] == "NVIDIA A100-10C" and infos[0]["vm_id_type"] == "uuid"
    # the VM / type / uuid lookups are cached per instance, not repeated every cycle
    assert fake.calls["nvmlVgpuInstanceGetVmID"] == 2


def test_vgpu_guest_says_what_the_hypervisor_hides() -> None:
    hidden = {"nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetTemperature"}
    fake = FakeNvml([FakeGpu("GPU-guest", A100, values={"virtualization": GUEST}, unsupported=hidden),
                     FakeGpu("GPU-bm", A100, unsupported={"nvmlDeviceGetPowerUsage"})])
    src = NvmlSource(nvml=fake.module)
    with src:
        snap = src.collect(1.0)
        why = src.unsupported_fields()
    for field in ("power_usage", "energy", "temperature_gpu"):
        assert snap.value("GPU-guest", field) is None  # absent, never 0
        assert why[("GPU-guest", field)] == HIDDEN_BY_HYPERVISOR
    assert why[("GPU-bm", "power_usage")] == "NotSupported"  # bare metal: the GPU's own limit
    said = {dict(s.labels)["field"] for s in snap.samples if s.uuid == "GPU-guest" and s.field == "hidden_field"}
    assert {"power_usage", "energy", "temperature_gpu"} <= said
    assert not [s for s in snap.samples if s.uuid == "GPU-bm" and s.field == "hidden_field"]
    assert snap.value("GPU-guest", "vgpu_license_status") == 1
    assert snap.value("GPU-guest", "util_gpu") == pytest.approx(0.87)  # what the guest may see is there


def test_bare_metal_makes_no_vgpu_calls() -> None:
    fake = FakeNvml([FakeGpu("GPU-bm", A100)])
    with NvmlSource(nvml=fake.module) as src:
        snap = src.collect(1.0)
    assert fake.calls["nvmlDeviceGetActiveVgpus"] == 0 and fake.calls["nvmlDeviceGetGridLicensableFeatures"] == 0
    assert not [s for s in snap.samples if s.field.startswith(("vgpu", "hidden"))]
