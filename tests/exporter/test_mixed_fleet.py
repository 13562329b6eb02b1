"""A node with NVIDIA and AMD GPUs: --source auto, MultiSource, one exposition that promtool accepts,
`gpufleet devices` listing both (fake pynvml and fake amdsmi at the import boundary)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gpufleet.exporter.errors import SourceUnavailable
from gpufleet.exporter.loop import CollectionLoop
from gpufleet.exporter.sinks.prometheus import PrometheusSink
from gpufleet.exporter.sources.amd import AmdSource
from gpufleet.exporter.sources.auto import open_source
from gpufleet.exporter.sources.multi import MultiSource
from gpufleet.exporter.sources.nvml import NvmlSource
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.cli import main
from tests.exporter.fake_amdsmi import FakeAmdGpu, FakeAmdSmi
from tests.exporter.fake_pynvml import FakeGpu, FakeNvml, FakeVgpu
from tests.servers import require_binary


def nvidia() -> FakeNvml:
    return FakeNvml([FakeGpu("GPU-h100", "NVIDIA H100 80GB HBM3", processes=[(4242, 2**30)]),
                     FakeGpu("GPU-host", "NVIDIA A100-SXM4-40GB", values={"virtualization": 3},
                             vgpus=[FakeVgpu(5, "vm-5")])])


def amd() -> FakeAmdSmi:
    return FakeAmdSmi([FakeAmdGpu("amd-mi300", processes=[(4343, 2**30)]),
                       FakeAmdGpu("amd-w7900", "AMD Radeon PRO W7900")])


def test_auto_runs_every_vendor_found() -> None:
    src = open_source("auto", node="mixed-1", nvml=nvidia().module, amdsmi=amd().module)
    try:
        assert isinstance(src, MultiSource) and src.name == "nvml+amd"
        snap = src.collect(10.0)
    finally:
        src.close()
    assert {d.vendor for d in snap.devices} == {"nvidia", "amd"}
    assert set(snap.up) == {"GPU-h100", "GPU-host", "amd-mi300", "amd-w7900"} and set(snap.up.values()) == {1}
    names = [s.collector for s in snap.stats]
    assert len(names) == len(set(names)) and {"power", "nvlink", "xgmi"} <= set(names)  # merged per family
    assert snap.value("GPU-h100", "power_usage") == 350.0 and snap.value("amd-mi300", "power_usage") == 512.0


def test_auto_with_one_vendor_runs_that_source_alone() -> None:
    src = open_source("auto", nvml=FakeNvml([], library_missing=True).module, amdsmi=amd().module)
    try:
        assert isinstance(src, AmdSource)
    finally:
        src.close()
    src = open_source("auto", nvml=nvidia().module, amdsmi=FakeAmdSmi([], driver_loaded=False).module)
    try:
        assert isinstance(src, NvmlSource)
    finally:
        src.close()


def test_amd_pcie_throughput_is_opt_in() -> None:
    for wanted in (False, True):
        src = open_source("amd", amdsmi=amd().module, amd_pcie_throughput=wanted)
        try:
            snap = src.collect(1.0)
        finally:
            src.close()
        assert (snap.value("amd-mi300", "pcie_tx") == 256_000) if wanted else snap.value("amd-mi300", "pcie_tx") is None


def test_auto_with_neither_is_one_line_pointing_at_the_twin() -> None:
    with pytest.raises(SourceUnavailable) as exc:
        open_source("auto", nvml=FakeNvml([], library_missing=True).module,
                    amdsmi=FakeAmdSmi([], driver_loaded=False).module)
    msg = str(exc.value)
    assert "\n" not in msg and msg.endswith("use --source twin to run on the simulated fleet")
    assert "nvml:" in msg and "amd:" in msg


def _exposition(names: str = "native") -> str:
    src = open_source("auto", node="mixed-1", nvml=nvidia().module, amdsmi=amd().module)
    try:
        loop = CollectionLoop(src, interval=1)
        sink = PrometheusSink(loop, names=names)
        loop.collect_once(now=1000.0)
        return sink.render(now=1000.0).decode()
    finally:
        src.close()


def test_mixed_exposition_passes_promtool() -> None:
    text = _exposition()
    vendors = {s.labels.get("vendor") for f in text_string_to_metric_families(text) for s in f.samples
               if f.name == "gpufleet_gpu_power_usage_watts"}
    assert vendors == {"nvidia", "amd"}
    assert "gpufleet_gpu_xgmi_link_up{" in text and "gpufleet_vgpu_info{" in text
    promtool = require_binary("promtool")
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    problems = [ln for ln in (p.stdout + p.stderr).decode().splitlines() if ln.strip()]
    assert p.returncode == 0 and problems == []


def test_dcgm_naming_labels_amd_devices_as_amd() -> None:
    text = _exposition("dcgm")
    temps = {s.labels["UUID"]: s.labels["device"] for f in text_string_to_metric_families(text)
             for s in f.samples if f.name == "DCGM_FI_DEV_GPU_TEMP"}
    assert temps == {"GPU-h100": "nvidia0", "GPU-host": "nvidia1", "amd-mi300": "amd0", "amd-w7900": "amd1"}


def test_devices_lists_both_vendors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", nvidia().module)
    monkeypatch.setitem(sys.modules, "amdsmi", amd().module)
    main(["devices"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("nvidia GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-h100)")
    assert lines[1].startswith("nvidia GPU 1: NVIDIA A100-SXM4-40GB") and lines[1].endswith("(vgpu_host)")
    assert lines[2].startswith("amd    GPU 0: AMD Instinct MI300X (UUID: amd-mi300) memory 192 GiB driver 6.10.5")
    assert lines[3].startswith("amd    GPU 1: AMD Radeon PRO W7900")
