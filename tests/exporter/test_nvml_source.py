"""NvmlSource over the scripted fake pynvml: families, units, absent fields, lost GPUs, MIG, GPM."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pynvml
import pytest
from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.collectors import registry
from gpufleet.exporter.errors import ConfigError, SourceUnavailable
from gpufleet.exporter.schema import EventKind, Snapshot
from gpufleet.exporter.sources.nvml import NvmlSource

from tests.exporter.fake_pynvml import GIB, FakeGpu, FakeMig, FakeNvml, FakeVgpu

H100, A100, T4, RTX = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "Tesla T4", "NVIDIA GeForce RTX 4090"


def fleet() -> FakeNvml:
    return FakeNvml([FakeGpu("GPU-h100", H100), FakeGpu("GPU-t4", T4), FakeGpu("GPU-4090", RTX)])


@pytest.fixture
def fake() -> FakeNvml:
    return fleet()


@pytest.fixture
def source(fake: FakeNvml) -> Iterator[NvmlSource]:
    src = NvmlSource(nvml=fake.module, node="node-a", xid_wait_ms=20)
    src.open()
    try:
        yield src
    finally:
        src.close()


def fields_of(snap: Snapshot, uuid: str) -> set[str]:
    return {s.field for s in snap.samples if s.uuid == uuid}


def test_inventory(source: NvmlSource) -> None:
    devs = {d.uuid: d for d in source.devices()}
    assert set(devs) == {"GPU-h100", "GPU-t4", "GPU-4090"}
    h = devs["GPU-h100"]
    assert (h.model, h.index, h.node, h.memory_total_bytes) == (H100, 0, "node-a", 80 * GIB)
    assert (h.driver_version, h.cuda_version, h.virtualization) == ("560.35.03", "12.6", "baremetal")
    assert h.pci_bus_id == "00000000:10:00.0" and h.serial == "SN0000000000"
    assert devs["GPU-4090"].serial is None  # NotSupported on consumer boards: absent, not ""


def test_samples_are_catalogue_fields_in_base_units(source: NvmlSource) -> None:
    snap = source.collect(1000.0)
    cat = catalogue()
    assert all(s.field in cat for s in snap.samples)
    assert all(s.ts == 1000.0 for s in snap.samples)
    v = snap.value
    assert v("GPU-h100", "power_usage") == 350.0            # mW -> W
    assert v("GPU-h100", "energy") == 123456.0              # mJ -> J
    assert v("GPU-h100", "clock_sm") == 1755e6              # MHz -> Hz
    assert v("GPU-h100", "util_gpu") == pytest.approx(0.87)  # percent -> ratio
    assert v("GPU-h100", "fb_total") == 80 * GIB
    assert v("GPU-h100", "fb_reserved") == 512 * 2**20
    assert v("GPU-h100", "pcie_tx") == 2048 * 1024           # KB/s -> bytes/s
    assert v("GPU-h100", "throttle_power_seconds") == 2.5    # ns -> s
    assert v("GPU-h100", "temperature_memory") == 70
    assert v("GPU-h100", "ecc_enabled") == 1
    assert v("GPU-h100", "remapped_rows_correctable") == 2
    assert v("GPU-h100", "clock_event_active", (("reason", "sw_power_cap"),)) == 1
    assert v("GPU-h100", "clock_event_active", (("reason", "hw_slowdown"),)) == 0
    assert v("GPU-h100", "nvlink_tx_bytes", (("link", "17"),)) == 18 * 1000 * 1024
    assert v("GPU-h100", "ecc_corrected_location", (("location", "device_memory"),)) == 0
    assert v("GPU-t4", "retired_pages_dbe") == 0
    assert v("GPU-t4", "fan_speed") == pytest.approx(0.30)
    assert v("GPU-h100", "info", (("cuda_version", "12.6"), ("driver_version", "560.35.03"),
                                  ("serial", "SN0000000000"), ("vbios_version", "96.00.99.00.01"),
                                  ("virtualization", "baremetal"))) == 1
    assert snap.up == {"GPU-h100": 1, "GPU-t4": 1, "GPU-4090": 1}
    assert [s.collector for s in snap.stats] == list(registry())
    assert all(s.success for s in snap.stats), [s.error for s in snap.stats if not s.success]


def test_unsupported_fields_absent_and_asked_once(source: NvmlSource, fake: FakeNvml) -> None:
    for t in range(3):
        snap = source.collect(1000.0 + t)
        # unsupported: absent, never zero
        assert "remapped_rows_correctable" not in fields_of(snap, "GPU-t4")
        assert "fan_speed" not in fields_of(snap, "GPU-h100")
        assert "ecc_enabled" not in fields_of(snap, "GPU-4090")
        assert "nvlink_up" not in fields_of(snap, "GPU-t4")
        assert "retired_pages_sbe" not in fields_of(snap, "GPU-h100")
    # asked once per (device, field), not every cycle
    assert fake.calls["nvmlDeviceGetRemappedRows"] == 3 + 1 + 1  # h100 each cycle, t4 and 4090 once
    assert fake.calls["nvmlDeviceGetFanSpeed"] == 1 + 3 + 3  # h100 once; t4 and 4090 each cycle
    why = source.unsupported_fields()
    assert why[("GPU-t4", "remapped_rows")] == "NotSupported"
    assert ("GPU-h100", "fan_speed") in why


def test_function_not_found_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNvml([FakeGpu("GPU-a"), FakeGpu("GPU-b")], missing={"nvmlDeviceGetTotalEnergyConsumption"})
    with caplog.at_level(logging.WARNING), NvmlSource(nvml=fake.module, xid_wait_ms=20) as src:
        snaps = [src.collect(float(t)) for t in range(3)]
    warned = [r for r in caplog.records if "nvmlDeviceGetTotalEnergyConsumption" in r.getMessage()]
    assert len(warned) == 1
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    for snap in snaps:
        assert snap.value("GPU-a", "energy") is None and snap.value("GPU-a", "power_usage") == 350.0
        assert all(s.success for s in snap.stats)


def test_memory_info_v2_missing_falls_back_to_v1() -> None:
    fake = FakeNvml([FakeGpu("GPU-a")], missing={"nvmlDeviceGetMemoryInfo_v2"})
    with NvmlSource(nvml=fake.module, collectors=["memory"]) as src:
        snap = src.collect(1.0)
    assert snap.value("GPU-a", "fb_used") == 10 * GIB
    assert snap.value("GPU-a", "fb_reserved") is None


def test_gpu_lost_mid_run_others_keep_reporting(source: NvmlSource, fake: FakeNvml) -> None:
    first = source.collect(1.0)
    assert "power_usage" in fields_of(first, "GPU-t4")
    fake.gpus[1].lost = True  # the T4 falls off the bus
    lost = source.collect(2.0)
    assert lost.up == {"GPU-h100": 1, "GPU-t4": 0, "GPU-4090": 1}
    assert fields_of(lost, "GPU-t4") == set()
    assert "power_usage" in fields_of(lost, "GPU-h100") and "power_usage" in fields_of(lost, "GPU-4090")
    events = [e for e in lost.events if e.kind == EventKind.GPU_LOST]
    assert [(e.uuid, e.node) for e in events] == [("GPU-t4", "node-a")]
    assert "GPU is lost" in events[0].detail["reason"]
    assert "GPU-t4" in {d.uuid for d in lost.devices}  # lost devices stay in the inventory
    again = source.collect(3.0)
    assert again.up["GPU-t4"] == 0 and not again.events and fields_of(again, "GPU-t4") == set()
    fake.gpus[1].lost = False  # after a reset it answers again
    back = source.collect(4.0)
    assert back.up["GPU-t4"] == 1
    assert [e.kind for e in back.events] == [EventKind.GPU_RECOVERED]
    assert back.value("GPU-t4", "power_usage") == 350.0


def test_xid_events_from_background_thread(source: NvmlSource, fake: FakeNvml) -> None:
    xid = source.collector("xid")
    assert xid is not None and xid.thread_alive  # type: ignore[attr-defined]
    assert fake.registered == {"GPU-h100", "GPU-t4", "GPU-4090"}
    quiet = source.collect(1.0)
    assert quiet.value("GPU-h100", "xid_last") == 0 and quiet.value("GPU-h100", "xid_errors", (("xid", "79"),)) is None
    fake.xid("GPU-h100", 79)
    fake.xid("GPU-t4", 48)
    fake.xid("GPU-t4", 48)
    assert xid.wait_processed(3, timeout=30)  # type: ignore[attr-defined]
    snap = source.collect(2.0)
    assert sorted((e.uuid, e.code) for e in snap.events if e.kind == EventKind.XID) == [
        ("GPU-h100", 79), ("GPU-t4", 48), ("GPU-t4", 48)]
    assert snap.value("GPU-t4", "xid_errors", (("xid", "48"),)) == 2
    assert snap.value("GPU-h100", "xid_last") == 79 and snap.value("GPU-4090", "xid_last") == 0
    assert next(s for s in snap.stats if s.collector == "xid").success
    later = source.collect(3.0)  # events are delivered once; counters persist
    assert not [e for e in later.events if e.kind == EventKind.XID]
    assert later.value("GPU-t4", "xid_errors", (("xid", "48"),)) == 2
    source.close()
    assert not xid.thread_alive  # type: ignore[attr-defined]


def test_no_xid_missed_between_scrapes(source: NvmlSource, fake: FakeNvml) -> None:
    xid = source.collector("xid")
    assert xid is not None
    seen = 0
    for burst in range(5):
        for _ in range(10):
            fake.xid("GPU-4090", 13)
        assert xid.wait_processed(10 * (burst + 1), timeout=30)  # type: ignore[attr-defined]
        seen += len([e for e in source.collect(float(burst)).events if e.kind == EventKind.XID])
    assert seen == 50
    assert source.collect(9.0).value("GPU-4090", "xid_errors", (("xid", "13"),)) == 50


def test_mig_instances_are_devices() -> None:
    gpu = FakeGpu("GPU-a100", A100, mig=[FakeMig("MIG-1", gi=1, ci=0, profile="3g.20gb", memory=20 * GIB,
                                                 processes=[(777, 3 * GIB)]),
                                         FakeMig("MIG-2", gi=2, ci=0, profile="1g.5gb", memory=5 * GIB)])
    fake = FakeNvml([gpu])
    with NvmlSource(nvml=fake.module, xid_wait_ms=20) as src:
        devs = {d.uuid: d for d in src.devices()}
        snap = src.collect(1.0)
    assert set(devs) == {"GPU-a100", "MIG-1", "MIG-2"}
    m = devs["MIG-2"]
    assert (m.mig_parent_uuid, m.mig_gi_id, m.mig_ci_id, m.mig_profile, m.index) == ("GPU-a100", 2, 0, "1g.5gb", 0)
    assert m.memory_total_bytes == 5 * GIB and m.is_mig
    assert snap.value("GPU-a100", "mig_mode") == 1
    assert snap.value("MIG-1", "fb_used") == 1 * GIB and snap.value("MIG-1", "fb_total") == 20 * GIB
    assert snap.value("MIG-1", "util_gpu") is None  # NotSupported on MIG instances: absent
    assert snap.value("MIG-1", "process_memory", (("container", ""), ("namespace", ""), ("pid", "777"),
                                                  ("pod", ""))) == 3 * GIB
    assert "processes" not in fields_of(snap, "GPU-a100")  # read per instance, not on the parent
    assert "clock_sm" not in fields_of(snap, "MIG-1")     # physical-only families skip instances
    assert snap.up == {"GPU-a100": 1, "MIG-1": 1, "MIG-2": 1}
    with NvmlSource(nvml=fake.module, collectors=["memory"]) as src2:  # a lost parent takes its instances
        src2.collect(1.0)
        gpu.lost = True
        snap2 = src2.collect(2.0)
    assert snap2.up == {"GPU-a100": 0, "MIG-1": 0, "MIG-2": 0} and not snap2.samples
    assert {e.uuid for e in snap2.events} == {"GPU-a100", "MIG-1", "MIG-2"}


def test_gpm_on_hopper_only(source: NvmlSource) -> None:
    first = source.collect(1.0)
    assert not [s for s in first.samples if s.field.startswith("prof_")]  # needs two samples
    second = source.collect(11.0)
    assert second.value("GPU-h100", "prof_sm_active") == pytest.approx(0.5)
    assert second.value("GPU-h100", "prof_pcie_tx") == 100 * 2**20  # MiB/s -> bytes/s
    assert {f for f in fields_of(second, "GPU-h100") if f.startswith("prof_")} == {
        m.field for m in catalogue().family("gpm")}
    assert not [s for s in second.samples if s.field.startswith("prof_") and s.uuid != "GPU-h100"]
    assert source.unsupported_fields()[("GPU-t4", "gpm")] == "NotSupported"


def test_vgpu_licence_only_in_guests() -> None:
    fake = FakeNvml([FakeGpu("GPU-g", values={"virtualization": 2}), FakeGpu("GPU-b")])
    with NvmlSource(nvml=fake.module, collectors=["virtualization"]) as src:
        snap = src.collect(1.0)
    assert snap.value("GPU-g", "vgpu_license_status") == 1
    assert snap.value("GPU-b", "vgpu_license_status") is None


def test_fake_fleet_covers_every_nvidia_catalogue_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.exporter.test_procattr import make_proc

    proc = tmp_path / "proc"
    make_proc(proc, 4242, "0::/kubepods.slice/kubepods-pod0f3c2a1e_1111_2222_3333_444455556666.slice/"
                          "cri-containerd-" + "a" * 64 + ".scope\n")
    fake = FakeNvml([FakeGpu("GPU-h", processes=[(4242, GIB)], process_util=[(4242, 5, 40, 20)],
                             values={"virtualization": 2}), FakeGpu("GPU-t", T4),
                     FakeGpu("GPU-v", "NVIDIA A100-SXM4-40GB", values={"virtualization": 3},
                             vgpus=[FakeVgpu(7, "vm-7")])])  # a vGPU host with one VM
    src = NvmlSource(nvml=fake.module, proc_root=proc, xid_wait_ms=20)
    with src:
        fake.xid("GPU-h", 31)
        assert src.collector("xid").wait_processed(1, timeout=30)  # type: ignore[union-attr]
        seen = {s.field for t in range(2) for s in src.collect(float(t)).samples}
    expected = {m.field for m in catalogue() if "nvidia" in m.vendors and m.family in registry()}
    assert expected - seen == {"up"}  # up is Snapshot.up, not a sample
    # the kubernetes family (pod attribution) comes from the pod-resources wrapper source, for either vendor
    families = {m.family for m in catalogue() if "nvidia" in m.vendors and m.family != "kubernetes"}
    assert families <= set(registry())


def test_collector_selection() -> None:
    fake = fleet()
    with NvmlSource(nvml=fake.module, collectors=["power", "clocks"]) as src:
        snap = src.collect(1.0)
    assert {s.collector for s in snap.stats} == {"power", "clocks"}
    assert {catalogue().field(s.field).family for s in snap.samples} == {"power", "clocks"}
    with pytest.raises(ConfigError, match="nvlinks"):
        NvmlSource(nvml=fake.module, collectors=["nvlinks"])


def test_unexpected_nvml_error_fails_the_collector_only() -> None:
    fake = fleet()
    with NvmlSource(nvml=fake.module, collectors=["power", "clocks"]) as src:
        def broken(h, *a):  # type: ignore[no-untyped-def]
            raise pynvml.NVMLError_Unknown()
        fake.module.__dict__["nvmlDeviceGetPowerUsage"] = broken
        snap = src.collect(1.0)
    stats = {s.collector: s for s in snap.stats}
    assert not stats["power"].success and "Unknown" in (stats["power"].error or "")
    assert stats["clocks"].success
    assert snap.value("GPU-h100", "power_usage") is None and snap.value("GPU-h100", "power_limit") == 700.0


def test_missing_library_raises_source_unavailable() -> None:
    """The real pynvml, as is: on a machine without the NVIDIA driver, one clear error."""
    src = NvmlSource()
    try:
        src.open()
    except SourceUnavailable as exc:
        assert "--source twin" in str(exc) and "NVIDIA driver" in str(exc)
        return
    src.close()
    pytest.skip("this machine has a working NVIDIA driver")


def test_fake_library_not_found_path() -> None:
    fake = FakeNvml([], library_missing=True)
    with pytest.raises(SourceUnavailable, match="no NVIDIA driver"):
        NvmlSource(nvml=fake.module).open()


def test_xid_wait_failure_reported_thread_survives(caplog: pytest.LogCaptureFixture) -> None:
    fake = fleet()
    src = NvmlSource(nvml=fake.module, collectors=["xid"], xid_wait_ms=20)
    real_wait = fake.module.nvmlEventSetWait
    failures = []

    def failing(event_set, timeout_ms):  # type: ignore[no-untyped-def]
        failures.append(1)
        raise pynvml.NVMLError_Unknown()

    fake.module.__dict__["nvmlEventSetWait"] = failing
    with caplog.at_level(logging.WARNING), src:
        xid = src.collector("xid")
        assert xid is not None
        for _ in range(3000):  # let the thread fail a few times (bounded; no timing asserted)
            if len(failures) >= 3:
                break
            time.sleep(0.01)
        bad = src.collect(1.0)
        fake.module.__dict__["nvmlEventSetWait"] = real_wait
        fake.xid("GPU-t4", 43)
        assert xid.wait_processed(1, timeout=30)  # type: ignore[attr-defined]
        good = src.collect(2.0)
    stat = bad.stats[0]
    assert not stat.success and "Unknown" in (stat.error or "")
    assert good.stats[0].success and good.value("GPU-t4", "xid_errors", (("xid", "43"),)) == 1
    assert len([r for r in caplog.records if "XID event wait failed" in r.getMessage()]) == 1


def test_gpu_lost_at_start_is_down_not_a_crash() -> None:
    fake = FakeNvml([FakeGpu("GPU-ok"), FakeGpu("GPU-dead", T4, lost=True)])
    with NvmlSource(nvml=fake.module, xid_wait_ms=20) as src:
        snap = src.collect(1.0)
    assert snap.up == {"GPU-ok": 1, "GPU-lost-index-1": 0}
    assert {s.uuid for s in snap.samples} == {"GPU-ok"}
