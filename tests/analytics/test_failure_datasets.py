"""Failure datasets: windows, labels, masks, and a time split that leaks nothing."""

from __future__ import annotations

import numpy as np
from gpufleet.analytics.datasets import (
    Panel,
    class_balance,
    make_windows,
    normalization_stats,
    prepare,
    subsample_negatives,
    time_split,
)

T0 = 1_700_000_000.0
STEP = 300.0
FIELDS = ("temperature_gpu", "ecc_corrected_volatile", "nvlink_crc_flit_errors")


def panel(gpus: int = 4, days: float = 6.0, seed: int = 0) -> Panel:
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / STEP)
    v = np.full((gpus, n, len(FIELDS)), np.nan, dtype=np.float32)
    v[:, :, 0] = 60 + rng.normal(size=(gpus, n))
    v[:, :, 1] = np.cumsum(rng.poisson(0.1, size=(gpus, n)), axis=1)  # a counter
    # nvlink: unsupported on every GPU (stays NaN)
    return Panel([f"GPU-{i}" for i in range(gpus)], T0 + STEP * np.arange(n), FIELDS, v)


def test_counters_become_increments_and_missing_stays_missing() -> None:
    p = prepare(panel())
    inc = p.values[:, 1:, 1]
    assert np.nanmin(inc) >= 0 and np.nanmax(inc) < 10  # increments, not the running total
    assert np.isnan(p.values[:, :, 2]).all()


def test_windows_labels_and_masks() -> None:
    p = prepare(panel())
    fail = {"GPU-1": np.array([T0 + 3 * 86400.0])}
    ws = make_windows(p, fail, window=6 * 3600, stride=3600, horizons=(3600.0, 86400.0))
    assert ws.X.shape[1:] == (72, 3)
    m = np.asarray(ws.mask[np.arange(len(ws))])
    assert m[:, :, 2].sum() == 0  # unsupported field is masked ...
    assert np.asarray(ws.X[np.arange(len(ws))])[:, :, 2].max() == 0  # ... and carries no fake value
    pos = ws.y[:, 1] == 1
    assert set(np.array(ws.uuids)[pos]) == {"GPU-1"}
    lead = ws.fail_ts[pos] - ws.t_end[pos]
    assert lead.min() > 0 and lead.max() <= 86400
    # no window contains its GPU's failure
    g1 = np.array(ws.uuids) == "GPU-1"
    assert not np.any((ws.t_start[g1] <= fail["GPU-1"][0]) & (ws.t_end[g1] >= fail["GPU-1"][0]))
    assert 0 < class_balance(ws)["24h"] < 0.1
    sub = subsample_negatives(ws, ratio=2.0, seed=0)
    assert sub.y.any(axis=1).sum() == ws.y.any(axis=1).sum() and len(sub) < len(ws)


def test_time_split_leaks_nothing() -> None:
    """Training windows and their labels end before the split; test windows start after it; the
    training data (and its normalisation statistics) do not change when later data changes."""
    split = T0 + 4 * 86400.0
    p = prepare(panel())
    fail = {"GPU-2": np.array([T0 + 4.5 * 86400.0])}
    ws = make_windows(p, fail, horizons=(3600.0, 86400.0))
    train, test = time_split(ws, split)
    assert len(train) and len(test)
    assert (train.t_end + 86400.0).max() <= split
    assert test.t_start.min() >= split
    assert train.y.sum() == 0  # the failure after the split cannot label a training window
    stats = normalization_stats(train)
    # poison everything after the split: training arrays and statistics stay identical
    p2 = panel()
    k = int((split - T0) / STEP)
    p2.values[:, k:, 0] = 1e6
    train2, _ = time_split(make_windows(prepare(p2), fail, horizons=(3600.0, 86400.0)), split)
    rows = np.arange(len(train))
    np.testing.assert_array_equal(np.asarray(train.X[rows]), np.asarray(train2.X[rows]))
    for a, b in zip(stats, normalization_stats(train2), strict=True):
        np.testing.assert_allclose(a, b)


def test_coarsen_sums_increments_averages_gauges_and_keeps_gaps() -> None:
    from gpufleet.analytics.datasets import coarsen

    p = prepare(panel(gpus=2, days=1.0))
    p.values[0, -6:, 0] = np.nan  # the last 30 minutes of one GPU's temperature are missing
    c = coarsen(p, 6 * STEP)
    assert c.step == 6 * STEP and c.values.shape == (2, len(p.times) // 6, 3)
    assert c.times[-1] == p.times[-1]  # a block is stamped with its last fine step: no look-ahead
    np.testing.assert_allclose(c.values[1, -1, 0], np.mean(p.values[1, -6:, 0]), rtol=1e-5)
    np.testing.assert_allclose(c.values[1, -1, 1], np.sum(p.values[1, -6:, 1]), rtol=1e-5)
    assert np.isnan(c.values[0, -1, 0]) and np.isnan(c.values[:, :, 2]).all()


def test_long_windows_keep_rows_of_the_recent_span() -> None:
    p = prepare(panel(gpus=3, days=6.0))
    fails = {"GPU-0": np.array([T0 + 3.0 * 86400])}
    short = make_windows(p, fails, window=6 * 3600, stride=3600)
    long = make_windows(p, fails, window=48 * 3600, stride=3600, recent=6 * 3600)
    common = set(zip(short.gpu, short.t_end, strict=True)) & set(zip(long.gpu, long.t_end, strict=True))
    # every long window ending after the first 48 h is a row of the short set too (a repaired GPU stays scored)
    late = {(g, t) for g, t in zip(long.gpu, long.t_end, strict=True) if t >= T0 + 48 * 3600}
    assert late and late <= common
    assert long.steps == 48 * 3600 // STEP
