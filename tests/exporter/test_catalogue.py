"""The metric catalogue: complete against dcgm-exporter's lists, well formed, errors name the line."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from gpufleet.exporter.catalogue import catalogue, load_catalogue
from gpufleet.exporter.errors import InputError

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


def _dcgm_fields(path: Path) -> set[str]:
    out = set()
    for line in path.read_text().splitlines():
        line = line.strip().lstrip("#").strip()
        if line.startswith(("DCGM_FI_", "DCGM_EXP_")) and "," in line:
            out.add(line.split(",")[0].strip())
    return out


# dcgm-exporter fields that are not metrics NVML can provide, with the reason.
NOT_FROM_NVML = {
    "DCGM_FI_DRIVER_VERSION": "a label: gpufleet_gpu_info{driver_version}",
    "DCGM_FI_NVML_VERSION": "a label of dcgm's own",
    "DCGM_FI_DEV_BRAND": "a label of dcgm's own",
    "DCGM_FI_DEV_SERIAL": "a label: gpufleet_gpu_info{serial}",
    "DCGM_FI_DEV_OEM_INFOROM_VER": "inforom versions are dcgm labels",
    "DCGM_FI_DEV_ECC_INFOROM_VER": "inforom versions are dcgm labels",
    "DCGM_FI_DEV_POWER_INFOROM_VER": "inforom versions are dcgm labels",
    "DCGM_FI_DEV_INFOROM_IMAGE_VER": "inforom versions are dcgm labels",
    "DCGM_FI_DEV_VBIOS_VERSION": "a label: gpufleet_gpu_info{vbios_version}",
    "DCGM_EXP_CLOCK_EVENTS_COUNT": "dcgm-exporter's own counter; gpufleet_gpu_clock_event_active per reason",
    "DCGM_EXP_GPU_HEALTH_STATUS": "DCGM health watches need the DCGM daemon",
    "DCGM_EXP_P2P_STATUS": "DCGM P2P status needs the DCGM daemon",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_L0": "per-link bytes: gpufleet_gpu_nvlink_{tx,rx}_bytes_total{link}",
}


@pytest.mark.parametrize("name", ["dcgm-exporter_default-counters.csv", "dcgm-exporter_dcp-metrics-included.csv"])
def test_catalogue_covers_dcgm_exporter_lists(name: str) -> None:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"{path} absent")
    have = catalogue().names("dcgm")
    missing = sorted(f for f in _dcgm_fields(path) - have if f not in NOT_FROM_NVML)
    assert not missing, f"catalogue lacks dcgm fields: {missing}"


def test_catalogue_conventions() -> None:
    cat = catalogue()
    assert len(cat) > 100
    for m in cat:
        assert m.name.startswith("gpufleet_")
        assert m.help, m.field
        if m.type == "counter":
            assert m.name.endswith("_total"), m.name
        for unit, suffix in (("bytes", "_bytes"), ("seconds", "_seconds"), ("celsius", "_celsius"),
                             ("watts", "_watts"), ("hertz", "_hertz"), ("joules", "_joules")):
            if m.unit == unit:
                assert suffix in m.name, f"{m.name} lacks its unit {unit}"
        assert "pid" not in m.labels or m.scope == "process"


def test_malformed_catalogue_names_line_and_column(tmp_path: Path) -> None:
    src = (Path(__file__).resolve().parents[2] / "exporter" / "catalogue.csv").read_text().splitlines()
    rows = list(csv.reader(src))
    rows[3][2] = "histogram"
    bad = tmp_path / "cat.csv"
    with bad.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(InputError) as exc:
        load_catalogue(bad)
    assert ":4" in str(exc.value) and "type" in str(exc.value)
