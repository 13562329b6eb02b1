"""Slurm power-saving advice: the advisor, and the shipped Resume/SuspendProgram script against the router
served over loopback HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from gpufleet.allocator.autoscale import AutoscaleSettings

from gpufleet.integrations.power import PowerAdvisor, power_router
from tests.servers import ROOT, free_port, wait_until

SCRIPT = ROOT / "deploy" / "slurm" / "gpufleet_power.py"
RISK = {"gpu03": 0.9, "gpu02": 0.2}


def _advisor() -> PowerAdvisor:
    adv = PowerAdvisor(AutoscaleSettings(gpus_per_node=8, scale_out_window_s=0, scale_in_window_s=120),
                       step_s=60, threshold=0.5, node_risk=lambda: RISK)
    for _ in range(3):  # 16 GPUs idle for 3 minutes on 4 powered nodes: 2 may go
        adv.observe(pending_gpus=0, idle_gpus=16, powered_nodes=4)
    return adv


def test_suspend_only_beyond_advice_riskiest_first_and_resume_skips_risky() -> None:
    adv = _advisor()
    d = adv.decide("suspend", ["gpu01", "gpu02", "gpu03"])
    assert d.recommended_nodes == 2
    assert d.approve == ["gpu02", "gpu03"] and set(d.deny) == {"gpu01"}
    assert "keeps 2 of 4" in d.deny["gpu01"]
    r = adv.decide("resume", ["gpu01", "gpu03"])
    assert r.approve == ["gpu01"] and r.deny["gpu03"].startswith("gpufleet: failure risk 0.90")
    fresh = PowerAdvisor().decide("suspend", ["a", "b"])
    assert fresh.approve == ["a", "b"] and fresh.recommended_nodes is None


@pytest.fixture
def service() -> Iterator[str]:
    app = FastAPI()
    app.include_router(power_router(_advisor()))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    wait_until(lambda: server.started, 20, "power advice service")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)


def _run(tmp_path: Path, action: str, hostlist: str, url: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    out = tmp_path / f"{action}-{time.monotonic_ns()}.txt"
    conf = tmp_path / "slurm.conf"  # enough for `scontrol show hostnames` (it contacts no daemon)
    conf.write_text("ClusterName=x\nSlurmctldHost=localhost\nAuthType=auth/none\n")
    env = {**os.environ, "GPUFLEET_URL": url, "GPUFLEET_POWER_ENV": str(tmp_path / "none.env"),
           "SLURM_CONF": str(conf), "GPUFLEET_TIMEOUT": "3",
           "GPUFLEET_POWER_UP_CMD": f"sh -c 'echo {{node}} >> {out}'",
           "GPUFLEET_POWER_DOWN_CMD": f"sh -c 'echo {{node}} >> {out}'"}
    p = subprocess.run([sys.executable, str(SCRIPT), action, hostlist], capture_output=True, text=True,
                       env=env, timeout=60, check=False)
    return p, (out.read_text().split() if out.exists() else [])


def test_script_powers_only_what_gpufleet_approves(tmp_path: Path, service: str) -> None:
    p, powered = _run(tmp_path, "suspend", "gpu[01-03]", service)
    assert p.returncode == 0, p.stderr
    assert sorted(powered) == ["gpu02", "gpu03"]
    assert "suspend gpu01: denied by gpufleet" in p.stderr
    p, powered = _run(tmp_path, "resume", "gpu[01,03]", service)
    assert powered == ["gpu01"] and "resume gpu03: denied" in p.stderr


def test_script_falls_back_to_slurms_choice_when_the_service_is_down(tmp_path: Path) -> None:
    p, powered = _run(tmp_path, "suspend", "gpu[01-02]", f"http://127.0.0.1:{free_port()}")
    assert p.returncode == 0, p.stderr
    assert powered == ["gpu01", "gpu02"] and "no advice from" in p.stderr
