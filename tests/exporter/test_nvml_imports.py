"""Importing any module under exporter/ stays light: no torch, pandas, statsmodels or scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "pandas", "statsmodels", "sklearn")

SCRIPT = f"""
import importlib, json, pkgutil, sys
import gpufleet.exporter as exporter
names = ["gpufleet.exporter"] + [m.name for m in pkgutil.walk_packages(exporter.__path__, "gpufleet.exporter.")]
for name in names:
    importlib.import_module(name)
from gpufleet.exporter.collectors import registry
registry()
print(json.dumps({{"modules": names, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def test_exporter_imports_no_heavy_libraries() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "gpufleet.exporter.sources.nvml" in got["modules"]
    assert "gpufleet.exporter.collectors.xid" in got["modules"]
    assert got["heavy"] == []
