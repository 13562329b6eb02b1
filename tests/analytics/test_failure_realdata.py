"""Real failure records: loaders (errors name file and line) and time-split backtests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from gpufleet.analytics import infinitehbd, titan
from gpufleet.exporter.errors import InputError


def test_titan_loader_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "gc_full.csv"
    p.write_text("SN,location,insert,remove,duration,out,event\n"
                 "1,c1-2c0s3n1,2014-01-01 00:00:00,2015-01-01 00:00:00,1,FALSE,\n"
                 "2,c1-2c0s3n1,not-a-date,2015-01-01 00:00:00,1,FALSE,DBE\n")
    with pytest.raises(InputError) as exc:
        titan.load(p)
    assert f"{p}:3" in str(exc.value) and exc.value.column == "insert"


def test_infinitehbd_loader_names_the_record(tmp_path: Path) -> None:
    p = tmp_path / "trace.json"
    p.write_text('[{"node_id": "a", "event_time": 1.0, "event_type": "fault_start", '
                 '"fault_type": {"Class": "GPU", "Desc": "x"}}, {"node_id": "b"}]')
    with pytest.raises(InputError) as exc:
        infinitehbd.load(p)
    assert str(p) in str(exc.value) and "record 1" in str(exc.value)
    p.write_text("[{")
    with pytest.raises(InputError) as exc:
        infinitehbd.load(p)
    assert f"{p}:1" in str(exc.value)


@pytest.mark.slow
@pytest.mark.data
def test_titan_time_split_backtest(shared_data: Path) -> None:
    data = titan.load(shared_data / "titan-gpu-lifetimes")
    assert len(data.serials) > 29000
    res = titan.backtest(data, datetime(2017, 1, 1))
    meta = res["meta"]
    assert meta["train_failures"] > 1000 and meta["test_failures_after_split"] > 1000
    for name in ("survival_age", "cox"):
        block = res["models"][name]["30d"]
        assert 0.4 < block["c_index"] < 1.0 and block["expected_failures"] > 0
        assert block["calibration"] and block["positives"] == block["observed_failures"]


@pytest.mark.slow
@pytest.mark.data
def test_infinitehbd_time_split_backtest(shared_data: Path) -> None:
    events = infinitehbd.load(shared_data / "infinitehbd-faults")
    assert sum(e.start and e.fault_class == "GPU" for e in events) == 158
    res = infinitehbd.backtest(events)
    assert res["meta"]["fleet_nodes"] == 400 and res["meta"]["split_day"] == 232
    for name in ("events_rate", "events_logistic"):
        for h in ("24h", "7d", "30d"):
            b = res["models"][name][h]
            assert b["positives"] > 0 and b["pr_auc"] is not None and 0 <= b["roc_auc"] <= 1
