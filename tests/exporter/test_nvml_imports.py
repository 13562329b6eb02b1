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
import exporter
names = ["exporter"] + [m.name for m in pkgutil.walk_packages(exporter.__path__, "exporter.")]
for name in names:
    importlib.import_module(name)
from exporter.collectors import registry
registry()
print(json.dumps({{"modules": names, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def test_exporter_imports_no_heavy_libraries() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "exporter.sources.nvml" in got["modules"] and "exporter.collectors.xid" in got["modules"]
    assert got["heavy"] == []
