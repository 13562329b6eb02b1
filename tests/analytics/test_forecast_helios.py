"""The Helios loader and a short real-data backtest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gpufleet.analytics.forecast import demand_from_helios
from gpufleet.analytics.helios import load_vc, vc_files
from gpufleet.exporter.errors import InputError

from tests.servers import require_data


def test_loader_reads_every_vc() -> None:
    folder = require_data("helios-earth-vc")
    files = vc_files(folder)
    assert len(files) == 16
    df = load_vc(files["vc6YE"])
    assert len(df) == 44640
    assert (df["running_gpu_num"] >= 0).all()


def test_loader_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "vcX_cluster_sequence_vc.csv"
    p.write_text("time,running_gpu_num,pending_gpu_num,idle_gpu_num,total_gpu_num\n"
                 "2020-05-01 00:00:00,1,0,7,8\n2020-05-01 00:01:00,1,x,7,8\n")
    with pytest.raises(InputError) as exc:
        load_vc(p)
    assert exc.value.line == 3 and exc.value.column == "pending_gpu_num"
    p.write_text("time,running_gpu_num\n2020-05-01 00:00:00,1\n")
    with pytest.raises(InputError, match="missing column"):
        load_vc(p)


@pytest.mark.slow
def test_helios_total_outage_is_missing_and_ets_beats_naive() -> None:
    from gpufleet.analytics.backtest import evaluate

    folder = require_data("helios-earth-vc")
    # zeros are demand by default: 10 May 2020 (the whole cluster reads 0) stays 0
    plain = demand_from_helios(folder, "1h")
    day0 = plain["total"][pd.DatetimeIndex(plain.index).normalize() == pd.Timestamp("2020-05-10")]
    assert day0.notna().all() and (day0 == 0).mean() > 0.9
    frame = demand_from_helios(folder, "1h", outage_value=0)
    assert frame.shape[1] == 17 and "total" in frame
    # with --outage-value 0, 10 May 2020 is a whole-cluster outage: missing, not zero
    day = frame["total"][pd.DatetimeIndex(frame.index).normalize() == pd.Timestamp("2020-05-10")]
    assert day.isna().mean() > 0.9
    assert np.nanmin(frame["total"].to_numpy()) > 0
    summary, _ = evaluate(frame[["total"]], "1h", 24, 24, ("seasonal_naive_daily", "seasonal_mean"), n_test=7, n_val=7)
    t = summary["series"]["total"]
    assert t["seasonal_mean"]["mae"] < t["seasonal_naive_daily"]["mae"]
