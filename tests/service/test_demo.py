"""`gpufleet demo` (the README's main job), small: every stage runs and writes what it promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufleet.cli import main


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    main(["demo", "--out", str(out), "--nodes", "2", "--gpus-per-node", "4", "--days", "3", "--seed", "3"])
    text = capsys.readouterr().out
    assert "gpufleet demo: 8 GPUs" in text and "reserve" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gpus"] == 8 and summary["samples"] > 10_000 and summary["jobs"] > 0
    assert summary["forecast"]["model"]
    # a plan per GPU type of the fleet; three days of history justify no reservation, and the plan says so
    by_type = summary["plan"]["by_type"]
    assert set(by_type) == {"A100", "H100"} and all(t["reserved"] == 0 for t in by_type.values())
    assert sum(t["installed"] for t in by_type.values()) == 8
    assert "3.0 days of demand history cannot support" in summary["plan"]["note"]
    assert "No plan: 3.0 days" in (out / "capacity-report" / "report.md").read_text()
    assert "reserve H100" in text
    # the live part: real jobs on the local executor, a GPU fault, the resume from the last checkpoint
    live = summary["live"]
    assert live["succeeded"] == live["jobs"] == 3 and live["restarts"] == 1
    assert live["faulted_gpu"] not in live["resumed_on"]
    assert live["resumed_from_step"] >= 2 * live["checkpoint_every"] and 0 <= live["steps_lost"] <= live["checkpoint_every"]
    assert live["weights_identical"] is True
    assert "bit-identical to an uninterrupted run" in text
    log = Path(live["log"]).read_text()
    assert f"resumed from step {live['resumed_from_step']}" in log and "weights sha256" in log
    assert len(list((out / "grafana" / "dashboards").glob("*.json"))) == 7
    assert (out / "cost-report" / "cost_monthly.csv").read_text().count("\n") >= 2
    assert (out / "history").is_dir()
    from gpufleet.exporter.store import HistoryStore

    with HistoryStore(out / "history") as store:
        assert store.span()[1] is not None and "allocated_gpus" in store.fields()
    # alerts per rule count distinct alerts, not the notifications that repeat a still-firing one
    firing = [a for note in (out / "outbox").glob("*.json") for a in json.loads(note.read_text())["firing"]]
    distinct = {(json.dumps(a["labels"], sort_keys=True), a["fired_at"]) for a in firing}
    assert sum(summary["alerts_by_rule"].values()) == len(distinct) <= len(firing)


@pytest.mark.slow
def test_demo_serve_from_a_fresh_data_folder_serves_what_the_demo_generated(tmp_path: Path) -> None:
    """`demo --serve` on a folder nobody initialised: the key is made under the data folder (never the
    source tree), the password shown once, and the API, /metrics and the history are the demo's."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import threading

    import httpx

    from tests.servers import free_port, wait_until

    out = tmp_path / "demo"
    api, metrics = free_port(), free_port()
    env = {**os.environ, "GPUFLEET_API__PASSWORD_HASH_TIME_COST": "1", "GPUFLEET_API__PASSWORD_HASH_MEMORY_KIB": "8192",
           "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "gpufleet", "demo", "--out", str(out), "--nodes", "1",
                             "--gpus-per-node", "2", "--days", "2", "--seed", "3", "--no-live", "--serve",
                             "--listen", f"127.0.0.1:{api}", "--metrics-listen", f"127.0.0.1:{metrics}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    base = f"http://127.0.0.1:{api}"
    try:
        def up() -> bool:
            assert proc.poll() is None, "".join(lines)
            return any('"event": "serving"' in line for line in lines)
        wait_until(up, 300, "demo --serve serving")
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, 60, "the API ready")
        text = "".join(lines)
        assert "signing key" not in text and "Traceback" not in text, text
        assert (out / "secrets" / "jwt.key").is_file()
        serving = next(line for line in lines if '"event": "serving"' in line)
        assert f'"api": "{base}"' in serving and f'"console": "{base}/"' in serving
        password = re.search(r"password \(shown once\): (\S+)", text)
        assert password, text
        token = httpx.post(f"{base}/auth/login", json={"username": "admin", "password": password.group(1)}).json()
        h = {"Authorization": f"Bearer {token['access_token']}"}
        gpus = httpx.get(f"{base}/gpus", headers=h).json()
        assert gpus["total"] == 2
        # the demo's jobs are the service's: the queue in the demo's database, served as they are
        jobs = httpx.get(f"{base}/jobs", headers=h).json()
        items = jobs["items"] if isinstance(jobs, dict) else jobs
        assert any(j["name"].startswith("demo") for j in items), jobs
        body = httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
        assert "gpufleet_capacity_gpus" in body and "gpufleet_gpu_temperature_celsius{" in body
        # its clock goes on from the demo's end: new samples land right after the demo's history
        from gpufleet.exporter.store import HistoryStore

        end = 1_767_225_600.0 + 2 * 86400.0
        wait_until(lambda: httpx.get(f"{base}/gpus", headers=h).json()["items"][0]["temperature_celsius"] is not None,
                   30, "live telemetry")
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        with HistoryStore(out / "history") as store:
            first, last = store.span()
            assert first is not None and last is not None and first < end <= last < end + 3600
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, "".join(lines)
    assert not (Path.cwd() / "secrets").exists()


def test_demo_plan_is_per_gpu_type_of_the_fleet(tmp_path: Path) -> None:
    """Two weeks of steady demand on an A100 / H100 / L40S fleet: one plan per type, priced from the price
    book (not every type as an A100), a reservation where the floor of demand pays for it, the HTML report."""
    import numpy as np
    import pandas as pd

    from gpufleet.demo import plan_demand

    hours = pd.date_range("2026-01-01", periods=15 * 24, freq="1h")
    rng = np.random.default_rng(0)
    demand = pd.Series(12 + 4 * np.sin(2 * np.pi * np.arange(len(hours)) / 24) + rng.normal(0, 0.5, len(hours)),
                       index=hours)
    models = ["A100-SXM4-80GB"] * 8 + ["H100-SXM5-80GB"] * 8 + ["L40S"] * 8
    forecast, plan, paths = plan_demand(tmp_path / "report", demand, models, seed=1)
    assert set(plan["by_type"]) == {"A100", "H100", "L40S"}
    assert {t: p["installed"] for t, p in plan["by_type"].items()} == {"A100": 8, "H100": 8, "L40S": 8}
    assert sum(p["reserved"] for p in plan["by_type"].values()) >= 6  # demand never falls below ~7 GPUs
    assert all(p["option"].startswith("1y") for p in plan["by_type"].values())  # 15 days support 1y terms only
    assert plan["expected_cost"] > 0 and forecast["median_next_day"] > 5
    html = Path(paths["capacity_report"]).read_text()
    assert all(t in html for t in ("A100", "H100", "L40S"))
