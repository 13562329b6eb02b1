"""The built wheel installs one top-level name, `gpufleet`, with the repository's folders mapped under it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAPPED = ("exporter", "simulator", "analytics", "models", "dashboards", "alerting", "allocator")


@pytest.mark.slow
def test_wheel_top_level_is_gpufleet_alone(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("gpufleet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert top == {"gpufleet"}
    for pkg in MAPPED:
        assert f"gpufleet/{pkg}/__init__.py" in names
        assert f"gpufleet/{pkg}/py.typed" in names
    # data files travel with their packages
    assert "gpufleet/exporter/catalogue.csv" in names
    assert "gpufleet/allocator/planner/pricebook.yaml" in names
    assert any(n.startswith("gpufleet/alerting/pack/") and n.endswith(".yaml") for n in names)
    # every package folder of the source tree ships (the package list in pyproject.toml is explicit)
    folders = [("gpufleet", ROOT / "gpufleet"), *((f"gpufleet/{p}", ROOT / p) for p in MAPPED)]
    for prefix, base in folders:
        for init in base.rglob("__init__.py"):
            rel = init.relative_to(base).as_posix()
            assert f"{prefix}/{rel}" in names, f"{prefix}/{rel} is missing: add its package to pyproject.toml"
