"""The capacity planner: newsvendor closed form, spot, service level, price book, backward rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gpufleet.allocator.planner.optimize import PlanSettings, backward_rule, charge, newsvendor, plan_type
from gpufleet.allocator.planner.pricebook import OPTIONS, derive_spot, load
from gpufleet.exporter.errors import InputError

from tests.servers import require_data


def _scenarios(seed: int = 0, s: int = 200, t: int = 168) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = 100 + 30 * np.sin(2 * np.pi * np.arange(t) / 24)
    return np.maximum(base + rng.normal(0, 15, (s, t)) + rng.normal(0, 10, (s, 1)), 0)


@pytest.mark.parametrize("option", ["1y_no_upfront", "3y_all_upfront"])
def test_one_type_no_spot_matches_the_newsvendor_quantile(option: str) -> None:
    price = load()["A100"]
    sc = _scenarios()
    plan = plan_type(price, sc, PlanSettings(allowed_options=(option,)))
    closed = newsvendor(price, sc, option)
    assert plan.option == option
    assert abs(plan.reserved - closed) <= 1.0
    # and it really is the cheapest: one GPU more or less costs more on average
    for r in (plan.reserved - 3, plan.reserved + 3):
        assert charge(price, r, sc, PlanSettings(), option).cost.mean() >= plan.expected_cost


def test_plan_outputs_are_consistent() -> None:
    price = load()["V100"]
    sc = _scenarios(1)
    plan = plan_type(price, sc, history=sc[0])
    assert plan.option == min(OPTIONS, key=lambda o: price.reserved[o])
    assert plan.cost_interval90[0] <= plan.expected_cost <= plan.cost_interval90[1]
    assert plan.savings_vs_on_demand > 0
    assert plan.break_even_utilization == pytest.approx(price.reserved[plan.option] / price.on_demand)
    assert plan.shortfall_prob == 0.0  # on-demand is unlimited by default
    assert set(plan.reserved_by_option) == set(OPTIONS)
    # a dearer option never reserves more
    assert plan.reserved_by_option["1y_no_upfront"] <= plan.reserved_by_option["3y_all_upfront"]


def test_spot_lowers_cost_and_counts_redone_work() -> None:
    price = load()["V100"]
    sc = _scenarios(2)
    no = plan_type(price, sc)
    yes = plan_type(price, sc, PlanSettings(spot_share=0.5))
    assert yes.expected_cost < no.expected_cost
    assert yes.expected_spot_hours > 0
    assert price.spot_redo_factor > 1.0
    c = charge(price, 0, sc[:1], PlanSettings(spot_share=1.0))
    assert c.spot_hours[0] == pytest.approx(sc[0].sum() * price.spot_redo_factor)


def test_service_level_with_an_on_demand_cap() -> None:
    price = load()["A100"]
    sc = _scenarios(3)
    free = plan_type(price, sc, PlanSettings(allowed_options=("1y_no_upfront",), on_demand_cap=20))
    tight = plan_type(price, sc, PlanSettings(allowed_options=("1y_no_upfront",), on_demand_cap=20,
                                              max_shortfall_prob=0.01))
    assert tight.shortfall_prob <= 0.01 < free.shortfall_prob
    assert tight.reserved > free.reserved
    capped = plan_type(price, sc, PlanSettings(on_demand_cap=20, max_unmet_gpu_hours=5.0))
    assert capped.expected_unmet_hours <= 5.0
    # nothing on demand and nothing may go unmet: reserve the peak of every scenario
    peak = plan_type(price, sc, PlanSettings(on_demand_cap=0, max_unmet_gpu_hours=0.0))
    assert peak.reserved == int(np.ceil(sc.max()))


def test_backward_rule_is_the_break_even_quantile_of_past_usage() -> None:
    price = load()["A100"]
    u = np.random.default_rng(4).uniform(0, 100, 30 * 24)
    r = backward_rule(price, u, "1y_no_upfront")
    q = np.quantile(u, 1 - price.reserved["1y_no_upfront"] / price.on_demand)
    assert abs(r - q) <= 1.5


def test_price_book_override_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("gpus:\n  A100: {on_demand: 2.0}\n  MI300X: {on_demand: 5.0, spot_discount: 0.5}\n")
    book = load(p)
    assert book["A100"].on_demand == 2.0 and book["A100"].spot_discount == load()["A100"].spot_discount
    assert book["MI300X"].reserved["3y_all_upfront"] == pytest.approx(5.0 * 0.40)
    with pytest.raises(InputError, match="no price"):
        book["TPU"]
    p.write_text("gpus: [unclosed\n")
    with pytest.raises(InputError) as exc:
        load(p)
    assert exc.value.line is not None
    p.write_text("gpus:\n  X: {spot_discount: 0.3}\n")
    with pytest.raises(InputError, match="on_demand"):
        load(p)


def test_default_spot_figures_match_the_advisor_data() -> None:
    csv = require_data("aws-spot-advisor-2025", "DERIVED_gpu_accel_spot_advisor_flat.csv")
    for g in load().gpus.values():
        disc, intr = derive_spot(csv, g.instance)
        assert g.spot_discount == pytest.approx(disc), g.gpu_type
        assert g.interruption_monthly == pytest.approx(intr), g.gpu_type
