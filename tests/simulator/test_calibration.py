"""The twin's A100 fleet matches AcmeTrace's real A100 distributions (KS distance per metric)."""

from __future__ import annotations

import numpy as np
import pytest
from gpufleet.simulator.calibration import REFERENCE, ks_distance, ks_report, sample_fleet

from tests.servers import require_data

# Fixed bound for every metric (not tuned per run): the largest gap between the twin's CDF and the
# real one may not exceed 15 percentage points.
KS_BOUND = 0.15


def test_ks_distance_is_the_largest_cdf_gap() -> None:
    assert ks_distance(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == pytest.approx(0.25)
    assert ks_distance(np.arange(100), np.arange(100)) == 0.0


@pytest.mark.slow
def test_fleet_distributions_match_acme_a100() -> None:
    folder = require_data("acme-trace-cdfs", "cdf_csv")
    ks = ks_report(folder, sample_fleet(nodes=16, days=4, seed=0))
    assert set(ks) == set(REFERENCE)
    for metric, d in ks.items():
        assert d <= KS_BOUND, f"{metric}: KS {d:.3f} > {KS_BOUND}"
