"""Firing and non-firing cases for every rule, run both by promtool and by gpufleet's engine.

A case is a few series sampled every minute (in native terms: catalogue metrics, extra labels and one
value per step, None = no sample) and the step at which the rule is evaluated. :func:`promtool_test`
turns cases into a ``promtool test rules`` file (in native or dcgm names); :func:`snapshots` turns them
into the Snapshots the engine sees, so both run the same inputs and must reach the same verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gpufleet.alerting.engine import AlertEngine, EngineConfig
from gpufleet.alerting.export import _Naming, prometheus_rule
from gpufleet.alerting.rules import REASON_BITS, Rule, RuleSet
from gpufleet.alerting.templating import render
from gpufleet.exporter.catalogue import Metric, catalogue
from gpufleet.exporter.schema import Device, Sample, Snapshot

STEP = 60.0
T0 = 0.0
NODE, UUID, GPU, MODEL = "n1", "GPU-0a1b", "0", "NVIDIA H100"
NATIVE_ID = {"uuid": UUID, "gpu": GPU, "node": NODE, "model": MODEL}
DCGM_ID = {"UUID": UUID, "gpu": GPU, "Hostname": NODE, "modelName": MODEL}


@dataclass
class Series:
    metric: Metric
    labels: dict[str, str]  # extra labels (xid, reason, series ...); identity added by scope
    values: list[float | None]
    uuid: str = UUID
    stale_after_last: bool = False


@dataclass
class Case:
    rule: Rule
    fires: bool
    series: list[Series]
    eval_step: int
    value: float | None = None  # the alert's value when it fires


def _delta(thr: float) -> float:
    return max(abs(thr) * 0.1, 0.05)


def _levels(rule: Rule) -> tuple[float, float]:
    """(a value that satisfies the rule, one that does not)."""
    t = rule.threshold
    low = min(t, rule.clear if rule.clear is not None else t) - _delta(t)
    return {
        ">": (t + _delta(t), low), ">=": (t, low), "<": (t - _delta(t), t + _delta(t)),
        "<=": (t, t + _delta(t)), "==": (t, 0.0 if t != 0 else 1.0), "!=": (t + 1, t),
    }[rule.op]


def cases(rule: Rule) -> list[Case]:
    """One firing and one non-firing case of a rule."""
    steps_for = math.ceil(rule.for_s / STEP)
    extra = {k: v[0] for k, v in rule.match}
    out: list[Case] = []
    for fires in (True, False):
        if rule.kind == "threshold" and rule.threshold_metric is not None:
            n = steps_for + 2
            on = {k: extra.get(k, "fleet") for k in rule.threshold_on}
            val = 110.0 if fires else 90.0
            s = [Series(rule.metric, {**extra, "horizon": "7d", **on}, [val] * (n + 1), uuid=""),
                 Series(rule.threshold_metric, on, [100.0] * (n + 1), uuid="")]
            out.append(Case(rule, fires, s, n, val))
        elif rule.kind == "threshold":
            n = steps_for + 2
            val = _levels(rule)[0 if fires else 1]
            out.append(Case(rule, fires, [Series(rule.metric, dict(extra), [val] * (n + 1))], n, val))
        elif rule.kind in ("increase", "rate"):
            n = max(steps_for + 3, 4)
            if fires and rule.new_series:
                vals: list[float | None] = [None] * (n - 2) + [1.0, 1.0, 1.0]
                value = 1.0
            elif fires:
                vals, value = [*([0.0] * (n - 2)), 2.0, 2.0, 2.0], None
            else:  # constant for longer than the window: nothing new, nothing rising
                n = steps_for + math.ceil(rule.window / STEP) + 3
                vals, value = list[float | None]([3.0] * (n + 1)), None
            alive = Series(catalogue().field("up"), {}, [1.0] * (n + 1))  # the node reports all along
            out.append(Case(rule, fires, [Series(rule.metric, dict(extra), vals), alive], n, value))
        elif rule.kind == "absent":
            k = 3
            n = k + 1 + steps_for + 1
            vals = [*([1.0] * (k + 1)), *([None] * (n - k) if fires else [1.0] * (n - k))]
            out.append(Case(rule, fires, [Series(rule.metric, {}, vals, stale_after_last=fires)], n, None))
        elif rule.kind == "below_recent_max":
            # two GPUs report; the second one's series stop (fires) or go on (quiet) while the node stays up
            k = 3
            n = k + 1 + steps_for + 1
            stays = Series(rule.metric, {}, [1.0] * (n + 1))
            gone = Series(rule.metric, {}, [*([1.0] * (k + 1)), *([None] * (n - k) if fires else [1.0] * (n - k))],
                          uuid="GPU-0a1c", stale_after_last=fires)
            out.append(Case(rule, fires, [stays, gone], n, 1.0 if fires else None))
        elif rule.kind == "below_inventory":
            n = steps_for + 2
            other = Series(rule.metric, {}, [0.0 if fires else 1.0] * (n + 1), uuid="GPU-0a1c")
            out.append(Case(rule, fires, [Series(rule.metric, {}, [1.0] * (n + 1)), other], n,
                            1.0 if fires else None))
        else:
            raise ValueError(f"no case generator for kind {rule.kind}")
    return out


# ------------------------------------------------------------------ promtool


def _series_labels(s: Series, naming: str) -> tuple[str, dict[str, str]]:
    n = _Naming(s.metric, naming)
    labels = dict(s.labels)
    name = n.name
    if s.metric.scope == "device":
        ident = DCGM_ID if n.dcgm else NATIVE_ID
        ident = {**ident, ("UUID" if n.dcgm else "uuid"): s.uuid}
        labels = {**ident, **labels}
    elif s.metric.scope == "node":
        labels = {"node": NODE, **labels}
    return name, labels


def _values(vals: list[float | None], scale: float, stale_after_last: bool) -> str:
    out = []
    last = max((i for i, v in enumerate(vals) if v is not None), default=-1)
    for i, v in enumerate(vals):
        if v is None:
            out.append("stale" if stale_after_last and i == last + 1 else "_")
        else:
            out.append(repr(v * scale) if scale != 1 else repr(v))
    return " ".join(out)


def _promtool_series(c: Case, naming: str) -> list[dict[str, str]]:
    out = []
    for s in c.series:
        if s.metric.field == "clock_event_active" and naming == "dcgm":
            reasons = catalogue().field("clock_event_reasons")
            bits = REASON_BITS[s.labels["reason"]]
            name, labels = _series_labels(Series(reasons, {}, s.values), naming)
            vals = _values([None if v is None else v * bits for v in s.values], 1, False)
        else:
            name, labels = _series_labels(s, naming)
            vals = _values(s.values, _Naming(s.metric, naming).scale, s.stale_after_last)
        sel = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        out.append({"series": sel, "values": vals})
    return out


def expected_alert(c: Case, naming: str) -> dict[str, Any]:
    rule = c.rule
    prom = prometheus_rule(rule, naming)
    s = c.series[0]
    n = _Naming(s.metric, naming)
    if rule.kind in ("absent", "below_inventory", "below_recent_max"):
        labels = {n.label("node"): NODE}
    elif s.metric.field == "clock_event_active" and naming == "dcgm":
        labels = dict(DCGM_ID)
    else:
        labels = _series_labels(s, naming)[1]
    tmpl_labels = dict(labels)
    for k, v in prom["labels"].items():
        labels[k] = render(v, tmpl_labels, 0.0)
    value = c.value if c.value is not None else engine_value(c)
    annotations = {k: render(v, tmpl_labels, value) for k, v in prom["annotations"].items()}
    return {"exp_labels": labels, "exp_annotations": annotations}


def promtool_test(case_list: list[Case], rule_file: str, naming: str) -> dict[str, Any]:
    tests = []
    for c in case_list:
        exp = [expected_alert(c, naming)] if c.fires else []
        tests.append({
            "name": f"{c.rule.name} {dict(c.rule.match)} {'fires' if c.fires else 'stays quiet'} ({naming})",
            "interval": "1m",
            "input_series": _promtool_series(c, naming),
            "alert_rule_test": [{"eval_time": f"{c.eval_step}m", "alertname": c.rule.name, "exp_alerts": exp}],
        })
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}


# ------------------------------------------------------------------ engine


def snapshots(c: Case) -> list[list[Snapshot]]:
    """The snapshots the engine receives at each step (a node sends nothing once all its series stop)."""
    steps: list[list[Snapshot]] = []
    n = max(len(s.values) for s in c.series)
    for i in range(n):
        ts = T0 + i * STEP
        by_node: dict[str, Snapshot] = {}
        for s in c.series:
            v = s.values[i] if i < len(s.values) else None
            if v is None:
                continue
            node = NODE if s.metric.scope in ("device", "node") else "fleet"
            snap = by_node.setdefault(node, Snapshot(ts=ts, node=node))
            if s.metric.scope == "device" and s.uuid not in {d.uuid for d in snap.devices}:
                snap.devices.append(Device(uuid=s.uuid, index=int(GPU), node=node, model=MODEL))
            if s.metric.field == "up":
                snap.up[s.uuid] = int(v)
            else:
                snap.samples.append(Sample(s.uuid if s.metric.scope == "device" else "", s.metric.field, v, ts,
                                           tuple(sorted(s.labels.items()))))
        steps.append(list(by_node.values()))
    return steps


def engine_run(c: Case, stale_after: float = STEP - 1) -> dict[str, float]:
    """Run the case through gpufleet's engine; the firing alerts of the case's rule at the eval step."""
    engine = AlertEngine(RuleSet([c.rule], []), config=EngineConfig(stale_after=stale_after, group_interval=0))
    steps = snapshots(c)
    for i in range(c.eval_step + 1):
        engine.step(steps[i] if i < len(steps) else [], now=T0 + i * STEP)
    return {a.key: a.value for a in engine.firing()}


def engine_value(c: Case) -> float:
    values = list(engine_run(c).values())
    assert len(values) == 1, f"engine fired {len(values)} alerts for {c.rule.name}"
    return values[0]
