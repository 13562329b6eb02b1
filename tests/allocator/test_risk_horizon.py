"""One risk horizon: risk travels as a value that carries its horizon, and the allocator converts by it."""

from __future__ import annotations

import numpy as np
import pytest
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.policies.base import Request
from gpufleet.models.failure_base import Risk

from .helpers import small_cluster


def test_a_one_hour_risk_costs_more_than_the_same_probability_over_a_day() -> None:
    day, hour = small_cluster(nodes=2, gpus=8), small_cluster(nodes=2, gpus=8)
    day.set_risk({f"GPU-0-{j}": Risk.of(0.1, "24h") for j in range(8)})
    hour.set_risk({f"GPU-0-{j}": Risk.of(0.1, "1h") for j in range(8)})
    assert day.risk_horizon_s == 86400.0 and hour.risk_horizon_s == 3600.0
    pol = make_policy("default")
    req = Request(0, 0, 1, duration_s=24 * 3600.0)
    nodes, slots = np.array([0, 1]), np.array([-1, -1])
    c_day = pol.risk_cost(day, req, nodes, slots)
    c_hour = pol.risk_cost(hour, req, nodes, slots)
    # 24 GPU-h at stake: over a day 0.1 of it; a 10 %-per-hour hazard for 24 h is 1 - 0.9 ** 24
    assert abs(c_day[0] - 2.4) < 1e-9
    assert abs(c_hour[0] - 24 * (1 - 0.9 ** 24)) < 1e-9


def test_mixed_horizons_are_converted_to_the_first_ones() -> None:
    st = small_cluster(nodes=1, gpus=4)
    st.set_risk({"GPU-0-0": Risk.of(0.5, "24h"), "GPU-0-1": Risk.of(0.5, "7d")})
    assert st.risk_horizon_s == 86400.0
    assert abs(st.risk[0, 0] - 0.5) < 1e-12
    assert abs(st.risk[0, 1] - (1 - 0.5 ** (1 / 7))) < 1e-9


def test_risk_aware_reads_the_horizon_of_the_risk() -> None:
    # node 0 (half used: best fit's choice) risky over one hour, node 1 safe: a 12 h job leaves node 0 only
    # if the risk is read over its own hour (over 24 h the same 0.05 would cost less than best fit's margin)
    st = small_cluster(nodes=2, gpus=4)
    st.set_risk({**{f"GPU-0-{j}": Risk.of(0.05, "1h") for j in range(4)},
                 **{f"GPU-1-{j}": Risk.of(0.0, "1h") for j in range(4)}})
    st.gpu_free[0, :2] = 0
    st.refresh()
    pol = make_policy("risk_aware", risk_weight=0.1)
    p = pol.place(st, Request(0, 0, 1, duration_s=12 * 3600.0))
    assert p is not None and p.node == 1


def test_risk_conversion_and_bad_values() -> None:
    r = Risk.of(0.2, "24h")
    assert r.label == "24h" and abs(r.over("7d").over("24h").p - 0.2) < 1e-12
    assert abs(r.hazard_per_hour - (-np.log(0.8) / 24)) < 1e-12
    with pytest.raises(ValueError, match="probability"):
        Risk(1.5, 3600.0)
    with pytest.raises(ValueError, match="horizon"):
        Risk.of(0.1, "soon")


def test_settings_reject_a_risk_horizon_without_a_unit() -> None:
    from pydantic import ValidationError

    from gpufleet.settings import ServeSettings

    assert ServeSettings(risk_horizon="1h").risk_horizon == "1h"
    with pytest.raises(ValidationError, match="risk_horizon"):
        ServeSettings(risk_horizon="tomorrow")
