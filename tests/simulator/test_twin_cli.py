"""`gpufleet twin run` writes history and labels into the store; other workloads drive the twin."""

from __future__ import annotations

from pathlib import Path

from gpufleet.exporter.schema import EventKind
from gpufleet.exporter.store import HistoryStore
from gpufleet.simulator.twin import Twin, TwinConfig
from typer.testing import CliRunner

from gpufleet.cli import app
from tests.servers import require_data

T0 = 1_700_000_000.0


def test_twin_run_writes_history_and_labels_apart(tmp_path: Path) -> None:
    out = tmp_path / "hist"
    res = CliRunner().invoke(app, ["twin", "run", "--nodes", "2", "--gpus-per-node", "2", "--days", "0.25",
                                   "--seed", "3", "--failure-rate", "200000", "--out", str(out),
                                   "--start", str(T0)])
    assert res.exit_code == 0, res.output
    assert "took" in res.output and "samples" in res.output
    store = HistoryStore(out, create=False)
    labels = store.labels()
    assert labels and all(lab.kind == EventKind.FAILURE for lab in labels)
    assert not [e for e in store.events() if e.kind == EventKind.FAILURE]
    assert {"power_usage", "temperature_gpu", "util_gpu"} <= set(store.fields())
    t0, t1 = store.span()
    assert t0 == T0 and t1 is not None and t1 >= T0 + 0.25 * 86400 - 120


def test_twin_run_reports_bad_inventory_with_line(tmp_path: Path) -> None:
    inv = tmp_path / "nodes.csv"
    inv.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,8,G2\n")
    res = CliRunner().invoke(app, ["twin", "run", "--inventory", str(inv), "--days", "0.01", "--out",
                                   str(tmp_path / "h")])
    assert res.exit_code != 0
    assert "nodes.csv:2" in str(res.exception) and "G2" in str(res.exception)


def test_openb_and_genai_workloads_drive_the_twin() -> None:
    pods = require_data("alibaba-openb", "csv", "openb_pod_list_default.csv")
    tw = Twin(TwinConfig(nodes=2, gpus_per_node=8, seed=1, workload="openb", workload_path=pods,
                         fields="history", failures=False))
    list(tw.run(T0, 2 * 3600, 60))
    assert any(j.state in ("running", "done") for j in tw.jobs)
    genai = Twin(TwinConfig(nodes=1, gpus_per_node=4, seed=1, workload="genai", fields="history",
                            workload_path=require_data("alibaba-genai-2026"), failures=False))
    utils = [x.value for s in genai.run(T0, 6 * 3600, 60) for x in s.samples if x.field == "util_gpu"]
    assert max(utils) > 0.05 and min(utils) == 0.0
