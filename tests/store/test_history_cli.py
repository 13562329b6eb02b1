"""`gpufleet history export` and `gpufleet history info` on a real store."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from gpufleet.exporter.store import HistoryStore

from gpufleet.cli import main
from tests.store.helpers import T0, devices, snapshot


@pytest.fixture
def store(tmp_path: Path) -> Path:
    with HistoryStore(tmp_path / "h") as s:
        for k in range(400):
            s.write(snapshot(k, devices()))
    return tmp_path / "h"


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_export_csv_window_and_fields(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["history", "export", "--store", str(store), "--format", "csv", "--fields",
                         "temperature_gpu,nvlink_bandwidth", "--since", str(T0 + 100), "--until", str(T0 + 140)], capsys)
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["ts", "uuid", "nvlink_bandwidth{link=1}", "temperature_gpu"]
    assert len(rows) == 1 + 4 * 4
    assert rows[1][0].endswith("Z") and rows[2][2] == ""  # absent: empty cell, never 0


def test_export_parquet_bucketed(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "h.parquet"
    code, _, err = _run(["history", "export", "--store", str(store), "--format", "parquet", "--out", str(out),
                         "--step", "600", "--agg", "max"], capsys)
    assert code == 0 and "rows" in err
    t = pq.read_table(out)
    assert t.column_names[:2] == ["ts", "uuid"] and "power_usage" in t.column_names
    want = HistoryStore(store).read(["power_usage"], step=600, agg="max")
    assert t.num_rows == len(want)
    assert sorted(t["power_usage"].to_pylist()) == sorted(want.columns["power_usage"].tolist())


def test_errors_and_info(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["history", "export", "--store", str(store), "--format", "csv", "--fields", "nope"], capsys)
    assert code == 2 and "no field nope" in err
    code, _, err = _run(["history", "export", "--store", str(store), "--format", "parquet"], capsys)
    assert code == 2 and "--out" in err
    code, _, err = _run(["history", "info", "--store", str(tmp_path / "none")], capsys)
    assert code != 0 and "no history store" in err
    code, out, _ = _run(["history", "info", "--store", str(store)], capsys)
    assert code == 0 and "devices   4 on 1 nodes" in out and "raw" in out
