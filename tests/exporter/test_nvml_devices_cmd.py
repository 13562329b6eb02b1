"""`gpufleet devices`: the fake NVML at the import boundary, the real missing-driver path, the twin."""

from __future__ import annotations

import json
import sys

import pytest
from gpufleet.exporter.errors import SourceUnavailable

from gpufleet.cli import main
from tests.exporter.fake_pynvml import GIB, FakeGpu, FakeMig, FakeNvml


@pytest.fixture
def fake_pynvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """Install the fake as the `pynvml` module itself, as the source imports it."""
    fake = FakeNvml([FakeGpu("GPU-1111", "NVIDIA H100 80GB HBM3"),
                     FakeGpu("GPU-2222", "NVIDIA A100-SXM4-40GB",
                             mig=[FakeMig("MIG-3333", gi=1, ci=0, profile="3g.20gb", memory=20 * GIB)])])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module)
    return fake


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_devices_lists_gpus_and_mig(fake_pynvml: FakeNvml, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["devices"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("nvidia GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1111) memory 80 GiB driver 560.35.03")
    assert lines[1].startswith("nvidia GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-2222)")
    assert "MIG 3g.20gb" in lines[2] and "MIG-3333" in lines[2]
    assert fake_pynvml.initialised == 0  # opened and shut down again


def test_devices_json(fake_pynvml: FakeNvml, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["devices", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert [d["uuid"] for d in data] == ["GPU-1111", "GPU-2222", "MIG-3333"]
    assert data[0]["memory_total_bytes"] == 80 * GIB and data[0]["driver_version"] == "560.35.03"
    assert data[2]["mig_parent_uuid"] == "GPU-2222" and data[2]["mig_profile"] == "3g.20gb"


def test_devices_without_driver_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The real pynvml on a machine without the NVIDIA driver: one red line, exit 4, no traceback."""
    from gpufleet.exporter.sources.nvml import NvmlSource

    try:
        NvmlSource(collectors=[]).open()
    except SourceUnavailable:
        pass
    else:
        pytest.skip("this machine has an NVIDIA driver")
    code, out, err = run(["devices"], capsys)
    assert code == 4 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--source twin" in err and "Traceback" not in err


def test_devices_twin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_TWIN__NODES", "2")
    monkeypatch.setenv("GPUFLEET_TWIN__GPUS_PER_NODE", "3")
    code, out, err = run(["devices", "--source", "twin", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert len(data) == 6 and len({d["node"] for d in data}) == 2
    assert all(d["uuid"].startswith("GPU-") for d in data)
