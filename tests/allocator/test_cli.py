from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpufleet.cli import app
from tests.allocator.test_replay import NODES, PODS

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GPUFLEET_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "pods.csv").write_text(PODS)
    return tmp_path


def test_replay_json(env: Path) -> None:
    r = runner.invoke(app, ["allocator", "replay", "--nodes", str(env / "nodes.csv"), "--pods", str(env / "pods.csv"),
                            "--policy", "best_fit", "--seeds", "1-3", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert len(out["alloc_pct_at_100"]["per_seed"]) == 3 and out["policy"] == "best_fit"
    r = runner.invoke(app, ["allocator", "replay", "--nodes", str(env / "nodes.csv"), "--pods", str(env / "pods.csv"),
                            "--mode", "timed", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["started"] == 5


def test_submit_queue_and_cost_report(env: Path) -> None:
    jobs = env / "jobs.yaml"
    jobs.write_text(
        "- {name: prep, gpus: 1, team: vision, user: ana, duration_s: 600}\n"
        "- {name: train, gpus: 8, team: vision, user: ana, depends_on: [prep]}\n"
        "- {name: wrongtype, gpus: 1, gpu_types: [H100]}\n"
        "- {name: orphan, gpus: 1, depends_on: [nothing]}\n")
    nodes = str(env / "nodes.csv")
    r = runner.invoke(app, ["allocator", "submit", str(jobs), "--nodes", nodes])
    assert r.exit_code == 3
    assert "accepted prep (running)" in r.output and "accepted train (queued)" in r.output
    assert "rejected wrongtype: unknown GPU type(s) H100" in r.output
    assert "rejected orphan: depends on missing job(s) nothing" in r.output
    r = runner.invoke(app, ["allocator", "queue", "--nodes", nodes, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert {j["name"]: j["status"] for j in data["jobs"]} == {"prep": "running", "train": "pending"}
    # finish prep through the library (as serve would), then report its cost
    from gpufleet.allocator.policies import make_policy
    from gpufleet.allocator.queue import JobQueue
    from gpufleet.allocator.state import ClusterState

    path = env / "data" / "allocator" / "queue.json"
    q = JobQueue.load(path, ClusterState.from_openb(nodes), make_policy("default"))
    q.complete("prep", q.jobs["prep"].started + 3600)  # type: ignore[operator]
    r = runner.invoke(app, ["report", "cost", "--out", str(env / "rep"), "--default-price", "2.5"])
    assert r.exit_code == 0, r.output
    md = (env / "rep" / "cost.md").read_text()
    assert "| vision | ana | V100M16 | 1.0 | 2.50 |" in md or "| vision | ana | T4 | 1.0 |" in md
    assert (env / "rep" / "cost_monthly.csv").read_text().startswith("month,team,user,gpu_type,gpu_hours,cost_usd")


def test_queue_prints_a_table_unless_json(env: Path) -> None:
    jobs = env / "jobs.yaml"
    jobs.write_text("- {name: prep, gpus: 1, team: vision, user: ana, duration_s: 600}\n"
                    "- {name: train, gpus: 8, team: vision, user: ana, depends_on: [prep]}\n")
    nodes = str(env / "nodes.csv")
    assert runner.invoke(app, ["allocator", "submit", str(jobs), "--nodes", nodes]).exit_code == 0
    r = runner.invoke(app, ["allocator", "queue", "--nodes", nodes])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    header = next(line for line in lines if "Job" in line and "Status" in line)
    assert all(col in header for col in ("Priority", "GPUs", "Team", "Nodes"))
    prep = next(line for line in lines if "prep" in line)
    train = next(line for line in lines if "train" in line)
    assert "running" in prep and "vision" in prep and "pending" in train
    assert "│" in prep or "|" in prep  # table cells, not a JSON line
    assert not any(line.lstrip().startswith("{") for line in lines)
    assert "1 pending" in r.output and "1 running" in r.output
