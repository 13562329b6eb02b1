"""gpufleet's engine reaches the same verdict as promtool on every rule's firing and quiet case."""

from __future__ import annotations

import pytest
from gpufleet.alerting.rules import load_rules

from tests.alerting.cases import cases, engine_run

RULES = load_rules()
CASES = [c for r in RULES.rules for c in cases(r)]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule.name}-{'|'.join(v[0] for _, v in c.rule.match) or 'all'}-"
                                             f"{'fires' if c.fires else 'quiet'}" for c in CASES])
def test_engine_verdict(case) -> None:  # type: ignore[no-untyped-def]
    fired = engine_run(case)
    assert len(fired) == (1 if case.fires else 0), fired
    if case.fires and case.value is not None:
        assert next(iter(fired.values())) == pytest.approx(case.value)


def test_every_rule_has_cases() -> None:
    assert {c.rule.name for c in CASES} == set(RULES.names())
    assert sum(c.fires for c in CASES) == len(RULES.rules)
