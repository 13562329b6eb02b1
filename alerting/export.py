"""Export the rule set for Prometheus users: a Prometheus rule file and an Alertmanager configuration.

The rule file is equivalent to gpufleet's own engine (same alert names, thresholds, ``for`` durations,
severities, labels and annotations), in native names or in dcgm-exporter names:

- ``native``: gpufleet metric names and labels (``uuid gpu node model ...``).
- ``dcgm``: dcgm-exporter names and labels (``UUID gpu Hostname modelName ...``) where the catalogue
  has a dcgm name; values are divided by the catalogue's ``dcgm_scale`` so thresholds stay in base
  units; each alert gets ``node`` and ``uuid`` labels copied from ``Hostname`` / ``UUID`` so one
  Alertmanager configuration serves both. Clock-event reasons become bit tests on
  ``DCGM_FI_DEV_CLOCKS_EVENT_REASONS``. Metrics dcgm-exporter has no equivalent for (GPU up, failure
  risk, queue ...) keep their gpufleet names (run the exporter with ``--names both``).

Hysteresis (a clear threshold) is written as ``expr(threshold) or (expr(clear) and ALERTS{...})``, so
Prometheus keeps an active alert until the clear threshold is crossed, as the engine does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from gpufleet.alerting.engine import DEFAULT_GROUP_BY
from gpufleet.alerting.rules import REASON_BITS, Rule, RuleSet, format_duration
from gpufleet.exporter.catalogue import Metric

NAMINGS = ("native", "dcgm")
DCGM_LABEL = {"node": "Hostname", "uuid": "UUID", "model": "modelName"}
RULE_FILE = {"native": "gpufleet-rules.yml", "dcgm": "gpufleet-rules-dcgm.yml"}


def _q(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _num(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e15 else repr(v)


def _selector(name: str, match: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    parts = []
    for k, vals in match:
        if len(vals) == 1:
            parts.append(f"{k}={_q(vals[0])}")
        else:
            parts.append(f"{k}=~{_q('|'.join(vals))}")
    return name + ("{" + ",".join(parts) + "}" if parts else "")


class _Naming:
    """How one metric of one rule is written in a naming mode."""

    def __init__(self, metric: Metric, naming: str) -> None:
        self.metric = metric
        self.dcgm = naming == "dcgm" and metric.dcgm_name is not None
        self.name = metric.dcgm_name if self.dcgm and metric.dcgm_name else metric.name
        self.scale = metric.dcgm_scale if self.dcgm else 1.0

    def label(self, native: str) -> str:
        return DCGM_LABEL.get(native, native) if self.dcgm else native

    def value(self, inner: str) -> str:
        return f"({inner} / {_num(self.scale)})" if self.scale != 1 else inner


def _clock_event_dcgm(rule: Rule, cat_reasons: Metric) -> str:
    """clock_event_active{reason=~...} == 1  ->  bit tests on the dcgm reasons bitmask."""
    reasons = dict(rule.match).get("reason", ())
    name = cat_reasons.dcgm_name or cat_reasons.name
    bits = [f"(floor({name} / {REASON_BITS[r]}) % 2)" for r in reasons if r in REASON_BITS]
    body = bits[0] if len(bits) == 1 else f"clamp_max({' + '.join(bits)}, 1)"
    return f"{body} {rule.op} {_num(rule.threshold)}"


def expression(rule: Rule, naming: str = "native", *, threshold: float | None = None) -> str:
    """The PromQL of one rule in a naming mode (``threshold`` replaces the rule's, for hysteresis)."""
    thr = rule.threshold if threshold is None else threshold
    n = _Naming(rule.metric, naming)
    sel = _selector(n.name, rule.match)
    w = format_duration(rule.window)
    op = rule.op
    if rule.kind == "threshold" and rule.metric.field == "clock_event_active" and naming == "dcgm":
        from gpufleet.exporter.catalogue import catalogue

        return _clock_event_dcgm(rule, catalogue().field("clock_event_reasons"))
    if rule.kind == "threshold":
        if rule.threshold_metric is not None:
            t = _Naming(rule.threshold_metric, naming)
            on = ", ".join(n.label(x) for x in rule.threshold_on)
            return f"{n.value(sel)} {op} on ({on}) group_left() {t.value(t.name)}"
        return f"{n.value(sel)} {op} {_num(thr)}"
    if rule.kind in ("increase", "rate"):
        main = f"{n.value(f'{rule.kind}({sel}[{w}])')} {op} {_num(thr)}"
        if rule.new_series:
            return f"({main}) or ({n.value(f'({sel} unless {sel} offset {w})')} {op} {_num(thr)})"
        return main
    if rule.kind == "stale":
        return f"time() - {n.value(sel)} {op} {_num(thr)}"
    if rule.kind == "absent":
        if rule.metric.scope == "device":
            node = n.label("node")
            return f"count by ({node}) (max_over_time({sel}[{w}])) unless count by ({node}) ({sel})"
        return f"max_over_time({sel}[{w}]) unless {sel}"
    if rule.kind == "below_recent_max":
        node = n.label("node")
        return f"(count by ({node}) (max_over_time({sel}[{w}])) - count by ({node}) ({sel})) {op} {_num(thr)}"
    if rule.kind == "below_inventory":
        node = n.label("node")
        return f"(count by ({node}) ({sel}) - sum by ({node}) ({sel})) {op} {_num(thr)}"
    raise ValueError(f"unknown kind {rule.kind}")


def _extra_labels(rule: Rule, naming: str) -> dict[str, str]:
    n = _Naming(rule.metric, naming)
    if not n.dcgm or rule.scope == "fleet":
        return {}
    out = {"node": "{{ $labels.Hostname }}"}
    if rule.scope == "gpu" and rule.kind != "absent":
        out["uuid"] = "{{ $labels.UUID }}"
    return out


def prometheus_rule(rule: Rule, naming: str = "native") -> dict[str, Any]:
    """One Prometheus alerting rule (a mapping for the rule file)."""
    expr = expression(rule, naming)
    extra = _extra_labels(rule, naming)
    labels = {**rule.all_labels(), **extra}
    if rule.clear is not None:
        ignoring = sorted({"alertname", "alertstate", *labels})
        expr = (f"({expr}) or ({expression(rule, naming, threshold=rule.clear)} "
                f"and ignoring({', '.join(ignoring)}) ALERTS{{alertname={_q(rule.name)}}})")
    n = _Naming(rule.metric, naming)
    annotations = {}
    for k, text in rule.annotations:
        if n.dcgm:
            for native, dcgm in DCGM_LABEL.items():
                text = text.replace(f"$labels.{native} ", f"$labels.{dcgm} ").replace(
                    f"$labels.{native}}}", f"$labels.{dcgm}}}")
        annotations[k] = text
    out: dict[str, Any] = {"alert": rule.name, "expr": expr}
    if rule.for_s > 0:
        out["for"] = format_duration(rule.for_s)
    out["labels"] = labels
    out["annotations"] = annotations
    return out


def rule_file(rules: RuleSet, naming: str = "native") -> dict[str, Any]:
    """The whole Prometheus rule file: one group per pack file."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rules.rules:
        group = "gpufleet-" + Path(r.path).stem.replace("_", "-") if r.path else "gpufleet"
        groups.setdefault(group, []).append(prometheus_rule(r, naming))
    return {"groups": [{"name": g, "rules": rs} for g, rs in groups.items()]}


def alertmanager_config(rules: RuleSet, *, webhook_url: str = "http://127.0.0.1:9099/alerts",
                        group_by: tuple[str, ...] = DEFAULT_GROUP_BY, group_wait: float = 30.0,
                        group_interval: float = 300.0, repeat_interval: float = 4 * 3600.0) -> dict[str, Any]:
    """Alertmanager routing (critical pages, the rest goes to the default receiver), grouping, inhibition.

    The receivers are webhooks to ``webhook_url``; replace them with your email / chat receivers.
    """
    def receiver(name: str) -> dict[str, Any]:
        return {"name": name, "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}

    def matchers(d: dict[str, str]) -> list[str]:
        return [f"{k}={_q(v)}" for k, v in sorted(d.items())]

    return {
        "route": {
            "receiver": "gpufleet-default",
            "group_by": list(group_by),
            "group_wait": format_duration(group_wait),
            "group_interval": format_duration(group_interval),
            "repeat_interval": format_duration(repeat_interval),
            "routes": [{"receiver": "gpufleet-page", "matchers": ['severity="critical"']}],
        },
        "receivers": [receiver("gpufleet-default"), receiver("gpufleet-page")],
        "inhibit_rules": [{"source_matchers": matchers(i.source), "target_matchers": matchers(i.target),
                           "equal": list(i.equal)} for i in rules.inhibit],
    }


def export(rules: RuleSet, out: Path | str, names: str = "both", **am: Any) -> list[Path]:
    """Write the rule file(s) and ``alertmanager.yml`` into ``out``; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    namings = NAMINGS if names == "both" else (names,)
    written = []
    header = "# Generated by `gpufleet alerting export` from gpufleet's rule pack; do not edit by hand.\n"
    for naming in namings:
        path = out / RULE_FILE[naming]
        path.write_text(header + yaml.safe_dump(rule_file(rules, naming), sort_keys=False, allow_unicode=True,
                                                width=200), encoding="utf-8")
        written.append(path)
    path = out / "alertmanager.yml"
    path.write_text(header + yaml.safe_dump(alertmanager_config(rules, **am), sort_keys=False), encoding="utf-8")
    written.append(path)
    return written


PROMETHEUS_RULE_FILE = "prometheusrule.yaml"


def prometheus_rule_resource(rules: RuleSet, names: str = "both", *, name: str = "gpufleet",
                             namespace: str = "gpufleet",
                             labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The rule pack as one Prometheus Operator ``PrometheusRule`` (monitoring.coreos.com/v1).

    ``labels`` go on the resource (kube-prometheus-stack selects rules by ``release: <its release>``);
    with ``names="both"`` the dcgm-named groups get a ``-dcgm`` suffix so every group name is unique."""
    groups: list[dict[str, Any]] = []
    for naming in NAMINGS if names == "both" else (names,):
        for group in rule_file(rules, naming)["groups"]:
            suffix = "-dcgm" if naming == "dcgm" and names == "both" else ""
            groups.append({**group, "name": group["name"] + suffix})
    meta_labels = {"app.kubernetes.io/name": "gpufleet", "app.kubernetes.io/part-of": "gpufleet", **(labels or {})}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": name, "namespace": namespace, "labels": meta_labels},
            "spec": {"groups": groups}}


def export_prometheus_rule(rules: RuleSet, out: Path | str, names: str = "both", **meta: Any) -> list[Path]:
    """Write ``<out>/prometheusrule.yaml`` (a PrometheusRule resource); returns the path written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROMETHEUS_RULE_FILE
    header = ("# Generated by `gpufleet alerting export --format prometheusrule` from gpufleet's rule pack; "
              "do not edit by hand.\n")
    path.write_text(header + yaml.safe_dump(prometheus_rule_resource(rules, names, **meta), sort_keys=False,
                                            allow_unicode=True, width=200), encoding="utf-8")
    return [path]
