"""Derived failure features: event history, deviation from normal, telemetry health; causal, and scored."""

from __future__ import annotations

import numpy as np
import pytest
from gpufleet.analytics.datasets import DAY, Panel, make_windows, prepare
from gpufleet.analytics.failure_features import add_features, needs_features

STEP = 1800.0
T0 = 1_700_000_000.0
FIELDS = ("temperature_gpu", "ecc_corrected_volatile", "pcie_replay")


def fleet(gpus: int = 6, days: float = 12.0, seed: int = 0) -> Panel:
    rng = np.random.default_rng(seed)
    n = int(days * DAY / STEP)
    v = np.zeros((gpus, n, len(FIELDS)), dtype=np.float32)
    v[:, :, 0] = 60 + rng.normal(size=(gpus, n))
    v[:, :, 1] = np.cumsum(rng.poisson(0.02, size=(gpus, n)), axis=1)
    return Panel([f"GPU-{i}" for i in range(gpus)], T0 + STEP * np.arange(n), FIELDS, v,
                 [f"n{i // 4}" for i in range(gpus)], ["A100"] * (gpus - 1) + ["H100"])


def col(p: Panel, name: str) -> np.ndarray:
    return p.values[:, :, p.fields.index(name)]


def test_event_history_counts_the_last_seven_days_only() -> None:
    raw = fleet()
    burst = int(3 * DAY / STEP)
    raw.values[2, burst:, 1] += 40.0  # 40 correctable errors at day 3 (a counter: a step up)
    p = add_features(prepare(raw))
    h = col(p, "hist:ecc_corrected_7d")
    after = burst + int(DAY / STEP)
    assert h[2, after] > np.arcsinh(39) and h[np.arange(6) != 2, after].max() < np.arcsinh(10)
    gone = burst + int(7 * DAY / STEP) + 2
    assert h[2, gone] < np.arcsinh(10)  # a week later the burst has left the history
    assert needs_features(p.fields) and add_features(p) is p


def test_fleet_and_own_deviation_and_no_future_leak() -> None:
    raw = fleet()
    half = raw.values.shape[1] // 2
    raw.values[1, half:, 0] += 8.0  # GPU-1 runs hotter than its A100 peers from mid-run
    p = add_features(prepare(raw))
    fd, od = col(p, "fleet_dev:temperature_gpu"), col(p, "own_dev:temperature_gpu")
    assert fd[1, half + 5:].mean() > 6 and abs(fd[0, half + 5:].mean()) < 1.5
    assert od[1, half + 1] > 5 and abs(od[1, -1]) < 2  # a jump against its own last day, then the new normal
    assert abs(np.nanmean(fd[5])) < 1e-6  # the one H100 is compared with H100s only (itself)
    # changing the future leaves every earlier derived value alone
    later = fleet()
    later.values[1, half:, 0] += 8.0
    later.values[:, -10:, :] += 100.0
    q = add_features(prepare(later))
    np.testing.assert_array_equal(p.values[:, : -10], q.values[:, : -10])


def test_telemetry_health_sees_an_outage_and_keeps_gaps_masked() -> None:
    raw = fleet()
    out = slice(int(4 * DAY / STEP), int(4.5 * DAY / STEP))
    raw.values[3, out, :] = np.nan  # GPU-3 stopped reporting for 12 h
    raw.values[4, int(6 * DAY / STEP):, 2] = np.nan  # GPU-4 stopped reporting PCIe replays
    p = add_features(prepare(raw))
    gap = col(p, "health:gap_7d")
    assert np.isnan(p.values[3, out]).all()  # nothing reported: nothing derived, windows still see a gap
    assert gap[3, out.stop + 2] > 0.05 and gap[0, out.stop + 2] == 0.0
    miss = col(p, "health:missing")
    assert miss[4, int(6 * DAY / STEP) + 1] > 0.3 and miss[0, int(6 * DAY / STEP) + 1] == 0.0


def test_a_model_trained_with_history_ranks_a_gpu_whose_errors_left_its_window() -> None:
    """A burst of correctable errors two days ago is outside a 6 h window: only the event history sees it."""
    from gpufleet.analytics.scoring import score_panel
    from gpufleet.models.baselines import BoostedTreesFailure

    rng = np.random.default_rng(1)
    gpus, n = 40, int(10 * DAY / STEP)
    v = np.zeros((gpus, n, len(FIELDS)), dtype=np.float32)
    v[:, :, 0] = 60 + rng.normal(size=(gpus, n))
    fails: dict[str, np.ndarray] = {}
    for g in range(0, gpus, 2):  # half the GPUs: a burst, then a failure ~2.5 days later
        b = int(rng.integers(int(1 * DAY / STEP), int(6 * DAY / STEP)))
        v[g, b:, 1] += 30.0
        fails[f"GPU-{g}"] = np.array([T0 + (b + int(2.5 * DAY / STEP)) * STEP])
    raw = Panel([f"GPU-{i}" for i in range(gpus)], T0 + STEP * np.arange(n), FIELDS, v,
                [f"n{i}" for i in range(gpus)], ["A100"] * gpus)
    p = add_features(prepare(raw))
    ws = make_windows(p, fails, window=6 * 3600, stride=3 * 3600, horizons=(DAY,))
    m = BoostedTreesFailure(max_iter=20, calibration_fraction=0.0, seed=0).fit(
        ws.X, ws.mask, ws.y, feature_names=p.fields, horizons=ws.horizons)
    # scoring: a fresh panel (raw fields only), a burst 2 days before its end on GPU-7
    score = fleet(gpus=8, days=8.0, seed=3)
    score.values[7, -int(2 * DAY / STEP):, 1] += 30.0
    s = score_panel(m, prepare(score))
    assert s.top(1, "24h")[0][0] == "GPU-7"
    assert len(np.unique(np.round(s.risk[:, 0], 6))) >= 2


@pytest.mark.slow
def test_twin_evaluation_prints_the_oracle_beside_the_models() -> None:
    from gpufleet.analytics.failure import evaluate_twin
    from gpufleet.models.baselines import OperatorRules

    res = evaluate_twin(train_seeds=(1,), test_seeds=(2,), nodes=1, days=10.0, rate_multiplier=3000.0,
                        horizons=(3600.0, DAY), models={"rules": OperatorRules()}, derived=True)
    assert set(res["models"]) == {"rules", "precursor_oracle"}
    oracle = res["models"]["precursor_oracle"]["24h"]
    assert oracle["positives"] == res["meta"]["test_positives"]["24h"] > 0
    assert oracle["pr_auc"] is not None and 0.0 <= oracle["pr_auc"] <= 1.0
