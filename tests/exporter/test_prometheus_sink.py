"""Prometheus exposition: names, units, labels in each naming mode; promtool check metrics."""

from __future__ import annotations

import re
import subprocess

import pytest
from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.errors import ConfigError
from gpufleet.exporter.loop import CollectionLoop
from gpufleet.exporter.sinks.prometheus import PrometheusSink
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.exporter.synthetic import SyntheticSource, exporter_metrics
from tests.servers import require_binary


def _render(names: str, n: int = 2) -> str:
    loop = CollectionLoop(SyntheticSource(n), interval=1)
    sink = PrometheusSink(loop, names=names)
    loop.collect_once(now=1000.0)
    return sink.render(now=1000.0).decode()


_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Exposition text -> {sample name as written: [(labels, value)]} (prometheus-client's parser renames
    dcgm's counters to *_total, so the names are read as written here)."""
    list(text_string_to_metric_families(text))  # well-formed for a real parser too
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = _LINE.match(line)
        assert m, line
        out.setdefault(m[1], []).append((dict(_LABEL.findall(m[2] or "")), float(m[3])))
    return out


def test_unknown_naming_mode_is_rejected() -> None:
    with pytest.raises(ConfigError):
        PrometheusSink(names="prometheus")


def test_native_names_and_labels() -> None:
    series = _parse(_render("native"))
    expected = {m.name for m in exporter_metrics()}
    assert expected <= set(series), sorted(expected - set(series))
    assert not [n for n in series if not n.startswith("gpufleet_")]
    labels = series["gpufleet_gpu_clock_sm_hertz"][0][0]
    assert {"uuid", "gpu", "node", "model", "pci_bus_id", "vendor"} <= set(labels)
    info = next(lab for lab, _ in series["gpufleet_gpu_info"] if lab["gpu"] == "0")
    assert info["driver_version"] == "550.54.15" and info["serial"] == "1650000000"
    mig = [lab for lab, _ in series["gpufleet_gpu_memory_used_bytes"] if "parent_uuid" in lab]
    assert {lab["gpu_instance_id"] for lab in mig} == {"1", "2"}
    assert {lab["mig_profile"] for lab in mig} == {"3g.40gb"}
    proc = series["gpufleet_process_gpu_memory_bytes"][0][0]
    assert proc["pod"] == "train-0" and proc["namespace"] == "ml"
    links = {lab["link"] for lab, _ in series["gpufleet_gpu_nvlink_crc_flit_errors_total"] if lab["gpu"] == "0"}
    assert links == {"0", "1"}


def test_dcgm_names_units_labels_and_summed_links() -> None:
    text = _render("dcgm")
    series = _parse(text)
    expected = {m.dcgm_name for m in exporter_metrics() if m.dcgm_name}
    assert expected <= set(series), sorted(expected - set(series))
    assert not [n for n in series if not n.startswith(("DCGM_", "gpufleet_collector_", "gpufleet_snapshot_"))]
    labels, value = next(x for x in series["DCGM_FI_DEV_FB_TOTAL"] if x[0]["gpu"] == "0")
    assert set(labels) == {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"}
    assert labels["device"] == "nvidia0" and labels["Hostname"] == "node-a"
    assert labels["DCGM_FI_DRIVER_VERSION"] == "550.54.15"  # dcgm-exporter's default-counters label
    assert value == pytest.approx(0.5 / 2**20)  # bytes -> MiB
    util = next(v for lab, v in series["DCGM_FI_DEV_GPU_UTIL"] if lab["gpu"] == "0" and "GPU_I_ID" not in lab)
    assert util == pytest.approx(50.0)  # ratio -> percent
    # NVLink error counters: dcgm sums the per-link values into one series per GPU.
    crc = [x for x in series["DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"] if x[0]["gpu"] == "1"]
    assert len(crc) == 1 and "link" not in crc[0][0] and crc[0][1] == 2 * 2.0
    # MIG instances: the parent's identity plus GPU_I_PROFILE / GPU_I_ID.
    mig = [lab for lab, _ in series["DCGM_FI_DEV_FB_USED"] if "GPU_I_ID" in lab]
    assert {lab["GPU_I_ID"] for lab in mig} == {"1", "2"}
    assert {lab["UUID"] for lab in mig} == {"GPU-00000000-0000-4000-8000-000000000000"}
    assert {lab["GPU_I_PROFILE"] for lab in mig} == {"3g.40gb"}
    # dcgm's counters keep dcgm's names (no _total), typed counter as dcgm-exporter does.
    assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n" in text


def test_both_mode_is_the_union() -> None:
    names = set(_parse(_render("both")))
    assert set(_parse(_render("native"))) | set(_parse(_render("dcgm"))) == names


def test_only_catalogue_metrics_are_emitted() -> None:
    known = catalogue().names("both")
    for mode in ("native", "dcgm", "both"):
        for fam in text_string_to_metric_families(_render(mode)):
            assert fam.name in known or f"{fam.name}_total" in known, fam.name


def test_registry_collector_gives_the_same_native_series() -> None:
    loop = CollectionLoop(SyntheticSource(2), interval=1)
    sink = PrometheusSink(loop, names="native")
    loop.collect_once()
    via_registry = set(_parse(generate_latest(sink.registry).decode()))
    assert via_registry == set(_parse(sink.render().decode()))


def _promtool(text: str) -> tuple[int, list[str]]:
    promtool = require_binary("promtool")
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    lines = (p.stdout + p.stderr).decode().splitlines()
    return p.returncode, [ln for ln in lines if ln.strip()]


def test_promtool_finds_nothing_in_native_output() -> None:
    rc, problems = _promtool(_render("native"))
    assert rc == 0 and problems == []


def test_promtool_on_dcgm_output_reports_only_dcgms_own_naming() -> None:
    rc, problems = _promtool(_render("dcgm"))
    assert rc != 0  # promtool exits non-zero on lint problems
    assert problems, "dcgm-exporter's counter names lack _total: promtool must say so"
    allowed = [
        re.compile(r'^DCGM_\w+ counter metrics should have "_total" suffix$'),
        # dcgm-exporter's own label names (UUID, modelName, Hostname, GPU_I_*) are not snake_case
        re.compile(r"^DCGM_\w+ label names should be written in 'snake_case' not 'camelCase'$"),
        re.compile(r"^DCGM_FI_DEV_PCIE_REPLAY_COUNTER metric name should not include type 'counter'$"),
    ]
    unexpected = [p for p in problems if not any(a.match(p) for a in allowed)]
    assert unexpected == []
    missing_total = {p.split()[0] for p in problems if "_total" in p}
    dcgm_counters = {m.dcgm_name for m in exporter_metrics() if m.dcgm_name and m.is_counter}
    assert missing_total == dcgm_counters


def test_values_render_exactly() -> None:
    from gpufleet.exporter.sinks.prometheus import Family, render_text

    fam = Family("gpufleet_gpu_power_usage_watts", "gauge", "h", [
        ("u1", (("uuid", "u1"),), (), 1410000000.0), ("u2", (("uuid", "u2"),), (), 0.51),
        ("u3", (("uuid", "u3"),), (), float("inf")), ("u4", (("uuid", 'a"b\\'),), (), 3.0)])
    text = render_text([fam], stale=frozenset({"u2"}))
    assert 'gpufleet_gpu_power_usage_watts{uuid="u1"} 1410000000\n' in text
    assert "u2" not in text
    assert 'gpufleet_gpu_power_usage_watts{uuid="u3"} +Inf\n' in text
    assert 'gpufleet_gpu_power_usage_watts{uuid="a\\"b\\\\"} 3\n' in text


@pytest.mark.parametrize("names", ["native", "dcgm", "both"])
def test_fast_renderer_gives_the_reference_text(names: str) -> None:
    """SnapshotRenderer (cached line prefixes) renders byte for byte what build_families + render_text
    give, over the synthetic fleet (MIG, processes, summed links, an unknown device) and the fake-NVML
    fleet, with and without stale devices, over consecutive snapshots (values change, prefixes are kept)."""
    from gpufleet.exporter.sinks.prometheus import SnapshotRenderer, build_families, render_text
    from gpufleet.exporter.sources.nvml import NvmlSource

    from tests.exporter.fake_pynvml import FakeGpu, FakeMig, FakeNvml

    fake = FakeNvml([FakeGpu("GPU-a", processes=[(11, 2**30)]), FakeGpu("GPU-b", model="Tesla T4"),
                     FakeGpu("GPU-c", model="NVIDIA A100-SXM4-40GB",
                             mig=[FakeMig("MIG-c1", 1, 0, "3g.20gb", 20 * 2**30)])])
    nvml = NvmlSource(nvml=fake.module, node="n1", xid_wait_ms=50)
    nvml.open()
    try:
        for source in (SyntheticSource(3), nvml):
            renderer = SnapshotRenderer(names, catalogue())
            for now in (1000.0, 1001.0):
                snap = source.collect(now)
                snap.samples.append(type(snap.samples[0])("GPU-unknown", "power_usage", 5.0, now))
                fams = build_families(snap, names)
                assert renderer.render(snap).decode() == render_text(fams)
                stale = frozenset({snap.devices[0].uuid})
                assert renderer.render(snap, stale).decode() == render_text(fams, stale)
    finally:
        nvml.close()


def test_fast_renderer_values_render_exactly() -> None:
    """Value texts are remembered by value: -0.0 and 0.0, 1 and 1.0, NaN and infinities still come out
    as the reference renderer writes them, cycle after cycle."""
    from gpufleet.exporter.schema import Device, Sample, Snapshot
    from gpufleet.exporter.sinks.prometheus import SnapshotRenderer, build_families, render_text

    dev = Device(uuid="GPU-x", index=0, node="n", model="m")
    renderer = SnapshotRenderer("both", catalogue())
    for values in ([0.0, -0.0, 1.0, 1e20, float("nan")], [-0.0, 0.0, float("inf"), 0.51, 7.0]):
        snap = Snapshot(ts=1.0, node="n", devices=[dev], up={"GPU-x": 1}, samples=[
            Sample("GPU-x", f, v, 1.0) for f, v in zip(
                ("power_usage", "temperature_gpu", "fan_speed", "energy", "util_gpu"), values, strict=True)])
        assert renderer.render(snap).decode() == render_text(build_families(snap, "both"))


def test_fast_renderer_follows_series_that_come_and_go() -> None:
    """Series recognised by position from the previous render: a snapshot with series missing, added or
    in another order still renders exactly as the reference does."""
    import random

    from gpufleet.exporter.sinks.prometheus import SnapshotRenderer, build_families, render_text

    source = SyntheticSource(3)
    renderer = SnapshotRenderer("both", catalogue())
    rng = random.Random(7)
    full = source.collect(1000.0)
    for step in range(4):
        snap = source.collect(1001.0 + step)
        if step == 1:
            snap.samples = snap.samples[5:]  # everything shifts by five
        elif step == 2:
            rng.shuffle(snap.samples)
        elif step == 3:
            snap.samples = full.samples + snap.samples[:10]  # longer than before
        assert renderer.render(snap).decode() == render_text(build_families(snap, "both"))
