"""`gpufleet failure` end to end: evaluate on real records, train and score from a twin store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpufleet.cli import app


@pytest.mark.slow
@pytest.mark.data
def test_evaluate_infinitehbd_json(shared_data: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["failure", "evaluate", "--dataset", "infinitehbd", "--json",
                                   "--data", str(shared_data / "infinitehbd-faults"), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["dataset"] == "infinitehbd" and out["source"] == "real records"
    assert set(out["models"]) == {"events_rate", "events_logistic"}
    assert {"pr_auc", "roc_auc"} <= set(out["models"]["events_rate"]["24h"])
    report = (tmp_path / "report.md").read_text()
    assert "real records" in report and (tmp_path / "pr_curves.png").stat().st_size > 0


def test_evaluate_rejects_unknown_dataset() -> None:
    res = CliRunner().invoke(app, ["failure", "evaluate", "--dataset", "nope"])
    assert res.exit_code != 0


@pytest.mark.slow
def test_train_and_score_from_a_twin_store(tmp_path: Path) -> None:
    from gpufleet.exporter.store import HistoryStore
    from gpufleet.simulator.twin import Twin, TwinConfig

    store = tmp_path / "store"
    # seed 6: a failure falls in the validation slice (with seed 5 none does, and the registry rightly
    # refuses to promote: tests/analytics/test_failure_eval.py)
    twin = Twin(TwinConfig(nodes=2, gpus_per_node=4, seed=6, failure_rate_multiplier=3000, fields="history"))
    with HistoryStore(store) as hs:
        for snap in twin.run(1_767_225_600.0, 4 * 86400.0, 600.0):
            hs.write(snap)
        hs.write_labels(twin.labels)
    runner = CliRunner()
    res = runner.invoke(app, ["failure", "train", "--store", str(store), "--registry", str(tmp_path / "reg"),
                              "--model", "gbt", "--step", "600"])
    assert res.exit_code == 0, res.output
    trained = json.loads(res.stdout)
    assert trained["version"] == "v0001" and trained["promoted"]
    res = runner.invoke(app, ["failure", "score", "--store", str(store), "--registry", str(tmp_path / "reg"),
                              "--top", "3", "--json", "--horizon", "1h"])
    assert res.exit_code == 0, res.output
    scored = json.loads(res.stdout)
    assert len(scored["risk"]) == 8 and len(scored["top"]) == 3
    assert all(0 <= r["risk"] <= 1 for r in scored["top"])
