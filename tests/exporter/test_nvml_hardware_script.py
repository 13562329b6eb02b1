"""scripts/hardware_check.sh end to end, with the fake pynvml installed as `pynvml` via sitecustomize.

This checks the script's plumbing (devices, probe, exporter run, scrape, summary); the real check is
running it on a GPU machine (docs/hardware.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SITE = """
import sys
sys.path.insert(0, {root!r})
from tests.exporter.fake_pynvml import FakeGpu, FakeNvml
_fake = FakeNvml([FakeGpu("GPU-h100-0"), FakeGpu("GPU-t4-1", "Tesla T4")])
sys.modules["pynvml"] = _fake.module
"""


@pytest.mark.slow
def test_hardware_check_script_with_fake_nvml(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE.format(root=str(ROOT)))
    env = dict(os.environ, PYTHONPATH=f"{site}:{ROOT}", HWCHECK_INTERVAL="1")
    out = tmp_path / "check"
    proc = subprocess.run([str(ROOT / "scripts" / "hardware_check.sh"), str(out), "4"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    probe = json.loads((out / "probe.json").read_text())
    assert probe["xid_thread_alive"] and probe["up"] == {"GPU-h100-0": 1, "GPU-t4-1": 1}
    assert "GPU-t4-1 remapped_rows (NotSupported)" in probe["not_supported"]
    assert all(c["success"] for c in probe["collectors"].values())
    exposition = (out / "exposition.txt").read_text()
    assert 'gpufleet_collector_success{collector="xid"} 1' in exposition
    assert "DCGM_FI_DEV_GPU_TEMP" in exposition  # --names both
    summary = (out / "summary.md").read_text()
    assert "### NVIDIA H100 80GB HBM3 x1, Tesla T4 x1; driver 560.35.03, CUDA 12.6" in summary
    assert "% of one core, peak RSS" in summary and "FAIL" not in summary
