"""The fleet capacity plan: one reservation per GPU type from the demand each type may serve, all types
optimised together (MILP), exact model matching, and the history a reservation term needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gpufleet.allocator.jobs import JobSpec
from gpufleet.allocator.planner.fleet import (
    DemandClass,
    InsufficientHistory,
    job_demand,
    options_for_history,
    plan_fleet,
    plan_service,
)
from gpufleet.allocator.planner.optimize import PlanSettings, plan_type
from gpufleet.allocator.planner.pricebook import OPTIONS, load
from gpufleet.allocator.queue import JobRecord
from gpufleet.exporter.errors import InputError


def _paths(mean: float, seed: int, s: int = 100, t: int = 168) -> np.ndarray:
    rng = np.random.default_rng(seed)
    daily = 1 + 0.2 * np.sin(2 * np.pi * np.arange(t) / 24)
    return np.maximum(mean * daily * (1 + 0.15 * rng.standard_normal((s, t))), 0)


FLEET = {"A100": 40.0, "H100": 10.0, "L40S": 20.0}


def _classes(**extra: float) -> list[DemandClass]:
    cl = [DemandClass(t, (t,), _paths(m, i)) for i, (t, m) in enumerate(FLEET.items())]
    for i, (key, m) in enumerate(extra.items()):
        cl.append(DemandClass(key, tuple(key.split("_")), _paths(m, 10 + i)))
    return cl


def test_each_type_is_planned_from_its_own_demand() -> None:
    book = load()
    fp = plan_fleet(book, _classes())
    assert set(fp.reserved) == set(FLEET)
    for c in _classes():  # no shared constraint: the joint plan is each type's own newsvendor plan
        own = plan_type(book[c.types[0]], c.scenarios, PlanSettings(allowed_options=(fp.option[c.name],)))
        assert abs(fp.reserved[c.name] - own.reserved) <= 1, c.name
    assert fp.reserved["A100"] > fp.reserved["L40S"] > fp.reserved["H100"]
    # more H100 demand moves the H100 reservation only
    more = [c if c.name != "H100" else DemandClass("H100", ("H100",), 3 * c.scenarios) for c in _classes()]
    fp2 = plan_fleet(book, more)
    assert fp2.reserved["H100"] >= 2.5 * fp.reserved["H100"]
    assert abs(fp2.reserved["A100"] - fp.reserved["A100"]) <= 1 and abs(fp2.reserved["L40S"] - fp.reserved["L40S"]) <= 1
    assert set(fp.by_type) == set(FLEET) and all(p.expected_cost > 0 for p in fp.by_type.values())


def test_a_job_allowed_on_two_types_is_served_by_either(tmp_path: Path) -> None:
    flexible = _classes(A100_H100=15.0)
    cheap_h100 = tmp_path / "p.yaml"
    cheap_h100.write_text("gpus:\n  H100: {on_demand: 2.0}\n")  # now H100 is cheaper than A100 (4.096)
    for book, where in ((load(), "A100"), (load(cheap_h100), "H100")):
        fp = plan_fleet(book, flexible)
        served = fp.served["A100_H100"]
        assert set(served) == {"A100", "H100"}
        other = "H100" if where == "A100" else "A100"
        assert served[where] > 0.75 * sum(served.values()) and served[other] > 0, (where, served)
        alone = plan_fleet(book, _classes())
        # the flexible demand is reserved for on the cheaper type, not on both ...
        assert fp.reserved[where] > alone.reserved[where] and abs(fp.reserved[other] - alone.reserved[other]) <= 1
        # ... and also fills the other type's idle reserved GPUs: cheaper than pinning it to one type
        pinned = plan_fleet(book, [*_classes(), DemandClass("A100_H100", (where,), flexible[-1].scenarios)])
        assert fp.expected_cost < pinned.expected_cost


def test_the_shared_budget_binds() -> None:
    book = load()
    free = plan_fleet(book, _classes())
    budget = 0.5 * free.reserved_spend
    tight = plan_fleet(book, _classes(), budget=budget)
    assert tight.reserved_spend <= budget + 1e-6 and tight.budget_binding and not free.budget_binding
    assert sum(tight.reserved.values()) < sum(free.reserved.values())
    assert tight.expected_cost > free.expected_cost
    # the budget goes where a reserved GPU saves most per dollar, not pro rata: every type still reserves
    assert all(tight.reserved[t] <= free.reserved[t] for t in FLEET)


def test_shared_service_level_with_an_on_demand_quota() -> None:
    book = load()
    s = PlanSettings(on_demand_cap=2.0, max_unmet_gpu_hours=50.0)
    fp = plan_fleet(book, _classes(), s)
    assert fp.expected_unmet_hours <= 50.0 + 1e-6
    with pytest.raises(InputError, match="max_unmet_gpu_hours"):
        plan_fleet(book, _classes(), PlanSettings(max_shortfall_prob=0.01))


def test_exact_model_matching() -> None:
    book = load()
    # the old substring match planned an L40S as "L4" and an H100 fleet as whatever type came first
    assert book.types_of(["A100-SXM4-80GB", "H100-SXM5-80GB", "L40S", "L4", "NVIDIA H100 80GB HBM3"]) == {
        "A100-SXM4-80GB": "A100", "H100-SXM5-80GB": "H100", "L40S": "L40S", "L4": "L4",
        "NVIDIA H100 80GB HBM3": "H100"}
    with pytest.raises(InputError, match=r"'A800-SXM4-80GB' is not in the price book.*models"):
        book.type_of("A800-SXM4-80GB")
    with pytest.raises(InputError, match="L40"):  # never a prefix / substring guess
        book.type_of("L40")


def test_history_supports_terms() -> None:
    assert options_for_history(30.0) == OPTIONS
    assert set(options_for_history(20.0)) == {o for o in OPTIONS if o.startswith("1y")}
    with pytest.raises(InsufficientHistory, match=r"2\.0 days .*3y_all_upfront.*14 days"):
        options_for_history(2.0)
    with pytest.raises(InsufficientHistory, match="3y_no_upfront"):
        options_for_history(20.0, OPTIONS, explicit=True)


def _record(name: str, gpus: int, types: tuple[str, ...], submitted: float, finished: float | None) -> JobRecord:
    rec = JobRecord(JobSpec(name=name, gpus=gpus, gpu_types=types), 0, submitted)
    rec.finished = finished
    return rec


def test_service_plan_per_type_from_job_demand() -> None:
    book = load()
    idx = pd.date_range("2024-03-01", periods=20 * 24, freq="1h", tz="UTC")
    t0 = idx[0].timestamp()
    end = t0 + len(idx) * 3600
    recs = [_record("a", 8, ("A100-SXM4-80GB",), t0, None), _record("h", 2, ("H100-SXM5-80GB",), t0, None),
            _record("l", 4, ("L40S",), t0 + 10 * 86400, None),
            _record("any", 1, ("A100-SXM4-80GB", "H100-SXM5-80GB"), t0, t0 + 86400)]
    demand = job_demand(recs, book.types_of(["A100-SXM4-80GB", "H100-SXM5-80GB", "L40S"]), ["A100", "H100", "L40S"],
                        t0, end)
    assert demand["A100"].max() == 8 and demand["L40S"][: 10 * 24].sum() == 0 and demand["A100|H100"][0] == 1
    models = ["A100-SXM4-80GB"] * 16 + ["H100-SXM5-80GB"] * 8 + ["L40S"] * 8
    total = pd.Series(sum(demand.values()), index=idx)
    plan = plan_service(book, models, recs, total, end, model="seasonal_mean", n=50)
    by = plan["recommendation"]["by_type"]
    assert set(by) == {"A100", "H100", "L40S"}
    assert plan["recommendation"]["installed"] == {"A100": 16, "H100": 8, "L40S": 8}
    assert by["A100"]["reserved"] == 8 and by["H100"]["reserved"] == 2 and by["L40S"]["reserved"] == 4
    assert all(v["term"].startswith("1y") for v in by.values())  # 20 days: no 3-year term
    short = plan_service(book, models, recs, total.iloc[-48:], end, model="seasonal_mean", n=50)
    assert all(v["reserved"] == 0 for v in short["recommendation"]["by_type"].values())
    assert "14 days" in short["recommendation"]["note"]
    with pytest.raises(InputError, match="A800"):
        plan_service(book, ["A800-SXM4-80GB"], recs, total, end)


def _console() -> list[str]:
    exe = shutil.which("gpufleet", path=str(Path(sys.executable).parent))
    assert exe, "the gpufleet console script is installed with the package"
    return [exe]


def _csv(path: Path, days: float) -> Path:
    t = pd.date_range("2024-03-01", periods=int(days * 24), freq="1h")
    rng = np.random.default_rng(0)
    pd.DataFrame({"time": t, "gpus": 50 + 10 * np.sin(2 * np.pi * np.arange(len(t)) / 24)
                  + rng.normal(0, 2, len(t))}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("days", "extra", "needle"), [
    (2, [], "2.0 days of demand history cannot support"),
    (20, ["--terms", "3y"], "cannot support 3y_no_upfront"),
])
def test_cli_refuses_reservations_the_history_cannot_support(tmp_path: Path, days: int, extra: list[str],
                                                             needle: str) -> None:
    csv = _csv(tmp_path / "d.csv", days)
    r = subprocess.run([*_console(), "report", "capacity", "--csv", str(csv), "--gpu-type", "V100",
                        "--scenarios", "20", "--out", str(tmp_path / "out"), *extra],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"}, check=False)
    assert r.returncode == 3, (r.stdout, r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpufleet: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out" / "index.html").exists()


def test_cli_unknown_model_is_one_clear_error(tmp_path: Path) -> None:
    csv = _csv(tmp_path / "d.csv", 16)
    r = subprocess.run([*_console(), "report", "capacity", "--csv", str(csv), "--gpu-type", "A800-SXM4-80GB",
                        "--scenarios", "20", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 3 and "'A800-SXM4-80GB' is not in the price book" in r.stderr, r.stderr


@pytest.mark.data
def test_realised_cost_case_on_helios(shared_data: Path) -> None:
    from gpufleet.allocator.planner.evaluate import capacity_case
    from gpufleet.analytics.forecast import demand_from_helios

    y = demand_from_helios(shared_data / "helios-earth-vc", "1h")["vcLJZ"]
    c = capacity_case(y, 14, load()["V100"], models=("seasonal_mean",), shifts=(0.0,), n=50)
    assert c.option == "1y_all_upfront" and c.test_hours == 168  # 14 days: no 3-year term
    assert set(c.validation) == {"rule+0.0", "seasonal_mean+0.0"} and c.choice in c.validation
    assert 0 < c.oracle_cost <= min(c.cost, c.rule_cost)
    assert c.unmet == c.rule_unmet == 0.0  # on-demand is unlimited


def test_cli_plans_every_type_together_with_installed_capacity(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gpufleet.cli import app

    rng = np.random.default_rng(2)
    t = pd.date_range("2024-03-01", periods=15 * 24, freq="1h")
    day = np.sin(2 * np.pi * np.arange(len(t)) / 24)
    rows = [pd.DataFrame({"time": t, "type": ty, "gpus": base + 0.2 * base * day + rng.normal(0, 1, len(t))})
            for ty, base in (("A100-SXM4-80GB", 12), ("L40S", 6), ("A100|H100", 4))]
    csv = tmp_path / "d.csv"
    pd.concat(rows).to_csv(csv, index=False)
    args = ["report", "capacity", "--csv", str(csv), "--series-col", "type", "--scenarios", "40",
            "--installed", "A100=16,H100=8,L40S=8", "--out", str(tmp_path / "out")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rec = pd.read_csv(tmp_path / "out" / "recommendation.csv").set_index("gpu_type")
    assert sorted(rec.index) == ["A100", "H100", "L40S"]  # never "L4", never one type for all
    assert rec.loc["A100", "installed_gpus"] == 16 and rec.loc["H100", "installed_gpus"] == 8
    assert (rec["term_option"].str.startswith("1y")).all()  # 15 days of history: no 3-year term
    # the flexible demand goes to the cheaper A100: H100 (no demand of its own) reserves nothing
    assert rec.loc["A100", "reserve_gpus"] > 12 and rec.loc["H100", "reserve_gpus"] == 0
    spend = sum(int(rec.loc[x, "reserve_gpus"]) * load()[x].reserved[rec.loc[x, "term_option"]] * 168
                for x in rec.index)
    r2 = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "out2"), "--budget", str(round(spend / 2))])
    assert r2.exit_code == 0 and "(binding)" in r2.output, r2.output
    rec2 = pd.read_csv(tmp_path / "out2" / "recommendation.csv").set_index("gpu_type")
    assert rec2["reserve_gpus"].sum() < rec["reserve_gpus"].sum()
