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
    assert summary["plan"]["reserved"] >= 0 and summary["forecast"]["model"]
    assert (out / "capacity-report" / "index.html").stat().st_size > 10_000
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
