"""The AMD source over a scripted fake ``amdsmi`` (no AMD GPU here) and the real library-missing path."""

from __future__ import annotations

import logging

import pytest
from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.collectors.amd import amd_registry
from gpufleet.exporter.errors import ConfigError, SourceUnavailable
from gpufleet.exporter.schema import EventKind
from gpufleet.exporter.sources.amd import AmdSource, load_amdsmi

from tests.exporter.fake_amdsmi import AmdSmiLibraryException, FakeAmdGpu, FakeAmdSmi
from tests.exporter.test_procattr import make_proc

MB = 2 ** 20


def fleet(**kw: object) -> FakeAmdSmi:
    return FakeAmdSmi([FakeAmdGpu("amd-mi300", processes=[(4242, 3 * 2**30)]),
                       FakeAmdGpu("amd-w7900", "AMD Radeon PRO W7900")], **kw)  # type: ignore[arg-type]


def test_real_library_missing_is_one_line() -> None:
    """The installed amdsmi binding without libamd_smi.so (this machine): one line, no traceback."""
    try:
        load_amdsmi()
    except SourceUnavailable as exc:
        msg = str(exc)
    else:
        pytest.skip("this machine has the AMD SMI library")
    assert "\n" not in msg and "libamd_smi.so" in msg and "--source twin" in msg
    with pytest.raises(SourceUnavailable, match=r"libamd_smi\.so"):
        AmdSource(collectors=[]).open()


def test_driver_not_loaded_is_one_line() -> None:
    with pytest.raises(SourceUnavailable, match="no amdgpu driver") as exc:
        AmdSource(amdsmi=FakeAmdSmi([], driver_loaded=False).module).open()
    assert "\n" not in str(exc.value) and "--source twin" in str(exc.value)


def test_devices_and_values_in_base_units() -> None:
    fake = fleet()
    with AmdSource(amdsmi=fake.module, node="n1") as src:
        devs = {d.uuid: d for d in src.devices()}
        snap = src.collect(100.0)
    mi = devs["amd-mi300"]
    assert mi.vendor == "amd" and mi.model == "AMD Instinct MI300X" and mi.pci_bus_id == "0000:80:00.0"
    assert mi.memory_total_bytes == 196_592 * MB and mi.driver_version == "6.10.5"
    assert mi.virtualization == "baremetal" and mi.cuda_version is None
    v = snap.value
    assert v("amd-mi300", "power_usage") == 512.0 and v("amd-mi300", "power_limit") == 750.0
    assert v("amd-mi300", "energy") == pytest.approx(8_000_000 * 15.3e-6)
    assert v("amd-mi300", "clock_sm") == 2100e6 and v("amd-mi300", "clock_memory_max") == 1300e6
    assert v("amd-mi300", "util_gpu") == pytest.approx(0.87) and v("amd-mi300", "fb_used") == 10_240 * MB
    assert v("amd-mi300", "temperature_gpu") == 48 and v("amd-mi300", "temperature_junction") == 63
    assert v("amd-mi300", "temperature_memory") == 57  # hottest HBM stack (no VRAM sensor on MI300)
    assert v("amd-w7900", "temperature_memory") == 52
    assert v("amd-w7900", "fan_speed") == pytest.approx(102 / 255)
    assert v("amd-mi300", "pcie_link_gen") == 5 and v("amd-mi300", "pcie_replay") == 2
    assert v("amd-mi300", "ecc_corrected_block", (("block", "umc"),)) == 4
    assert v("amd-mi300", "xgmi_link_up", (("link", "6"),)) == 1
    assert v("amd-mi300", "xgmi_tx_bytes", (("link", "0"),)) == 2000 * 1024
    assert v("amd-mi300", "clock_event_active", (("reason", "sw_power_cap"),)) == 1
    assert v("amd-mi300", "clock_event_active", (("reason", "hbm_thermal_slowdown"),)) == 0
    mem = [s for s in snap.samples if s.field == "process_memory"]
    assert [(dict(s.labels)["pid"], s.value) for s in mem] == [("4242", 3 * 2**30)]
    assert snap.up == {"amd-mi300": 1, "amd-w7900": 1} and all(s.success for s in snap.stats)


def test_unsupported_fields_are_absent_and_asked_once() -> None:
    fake = fleet()
    src = AmdSource(amdsmi=fake.module)
    with src:
        snaps = [src.collect(float(t)) for t in range(3)]
        why = src.unsupported_fields()
    for snap in snaps:
        assert snap.value("amd-mi300", "fan_speed") is None  # MI300X: no fan; absent, never 0
        assert not [s for s in snap.samples if s.uuid == "amd-w7900" and s.field.startswith(("xgmi", "ecc"))]
    assert why[("amd-mi300", "fan_speed")] == "NotSupported"
    assert why[("amd-w7900", "xgmi_link_up")] == "NotSupported"
    assert fake.gpus[0].unsupported >= {"amdsmi_get_gpu_fan_speed"}
    # the refused call was made once per device, not once per cycle
    assert fake.calls["amdsmi_get_gpu_xgmi_link_status"] == 3 + 1  # MI300 every cycle, W7900 once


def test_na_strings_are_left_out() -> None:
    fake = FakeAmdSmi([FakeAmdGpu("amd-0", values={"power": "N/A", "activity": ("N/A", 40)})])
    with AmdSource(amdsmi=fake.module) as src:
        snap = src.collect(1.0)
    assert snap.value("amd-0", "power_usage") is None and snap.value("amd-0", "util_gpu") is None
    assert snap.value("amd-0", "util_memory") == pytest.approx(0.40)


def test_missing_function_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    fake = fleet(missing={"amdsmi_get_violation_status"})
    with caplog.at_level(logging.WARNING, logger="gpufleet.exporter.amdsmi_query"), AmdSource(amdsmi=fake.module) as src:
        snaps = [src.collect(float(t)) for t in range(2)]
    assert all(not [s for s in snap.samples if s.field == "clock_event_active"] for snap in snaps)
    warnings = [r for r in caplog.records if "amdsmi_get_violation_status" in r.getMessage()]
    assert len(warnings) == 1
    assert all(s.success for s in snaps[-1].stats)


def test_gpu_lost_then_recovered() -> None:
    fake = fleet()
    with AmdSource(amdsmi=fake.module) as src:
        src.collect(1.0)
        fake.gpus[0].lost = True
        lost = src.collect(2.0)
        again = src.collect(3.0)
        fake.gpus[0].lost = False
        back = src.collect(4.0)
    assert lost.up == {"amd-mi300": 0, "amd-w7900": 1}
    assert [(e.kind, e.uuid) for e in lost.events] == [(EventKind.GPU_LOST, "amd-mi300")]
    assert not [s for s in lost.samples if s.uuid == "amd-mi300"]
    assert lost.value("amd-w7900", "power_usage") == 512.0  # the other GPU keeps reporting
    assert again.events == [] and again.up["amd-mi300"] == 0
    assert [e.kind for e in back.events] == [EventKind.GPU_RECOVERED] and back.up["amd-mi300"] == 1
    assert back.value("amd-mi300", "power_usage") == 512.0


def test_unexpected_error_fails_only_its_collector() -> None:
    fake = fleet()
    with AmdSource(amdsmi=fake.module, collectors=["power", "clocks"]) as src:
        def broken(h: object) -> None:
            raise AmdSmiLibraryException(7)  # AMDSMI_STATUS_API_FAILED
        fake.module.__dict__["amdsmi_get_power_info"] = broken
        snap = src.collect(1.0)
    stats = {s.collector: s for s in snap.stats}
    assert not stats["power"].success and "amdsmi_get_power_info" in (stats["power"].error or "")
    assert stats["clocks"].success and snap.value("amd-mi300", "power_limit") == 750.0


def test_amd_throttle_reasons_match_the_catalogue_list() -> None:
    from gpufleet.exporter.catalogue import AMD_CLOCK_EVENT_REASONS
    from gpufleet.exporter.collectors.amd.throttle import REASONS

    assert tuple(reason for reason, _ in REASONS) == AMD_CLOCK_EVENT_REASONS


def test_collector_selection_skips_nvidia_only_families() -> None:
    fake = fleet()
    with AmdSource(amdsmi=fake.module, collectors=["power", "nvlink", "gpm"]) as src:
        snap = src.collect(1.0)
    assert {s.collector for s in snap.stats} == {"power"}
    with pytest.raises(ConfigError, match="bogus"):
        AmdSource(amdsmi=fake.module, collectors=["bogus"])


def test_fake_fleet_produces_every_amd_catalogue_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = tmp_path / "proc"
    make_proc(proc, 4242, "0::/kubepods.slice/kubepods-pod0f3c2a1e_1111_2222_3333_444455556666.slice/"
                          "cri-containerd-" + "a" * 64 + ".scope\n")
    with AmdSource(amdsmi=fleet().module, proc_root=proc, pcie_throughput=True) as src:
        seen = {s.field for s in src.collect(1.0).samples}
    # the kubernetes family (pod attribution) comes from the pod-resources wrapper source (test_podresources)
    claimed = {m.field for m in catalogue() if "amd" in m.vendors and m.family != "kubernetes"}
    assert claimed - seen == {"up"}  # up is Snapshot.up, not a sample
    assert {m.family for m in catalogue() if "amd" in m.vendors and m.family != "kubernetes"} <= set(amd_registry())
    assert seen <= claimed  # nothing emitted that the catalogue does not credit to AMD
