"""Alert rules as YAML: load, validate and describe them.

A rule file holds ``rules:`` (a list) and optionally ``inhibit:`` (inhibition rules). A rule is an
expression over one gpufleet metric (a catalogue name), a ``for`` duration, an optional clear
threshold (hysteresis), a severity, labels and annotations::

    rules:
      - name: GpuTemperatureHigh
        kind: threshold            # threshold | increase | rate | absent | stale | below_inventory | below_recent_max
        metric: gpufleet_gpu_temperature_celsius
        match: {}                  # label: value or [values] (any of)
        op: ">"
        threshold: 85
        clear: 80                  # once active, stays active while value > 80
        for: 5m
        severity: warning          # critical (pages) | warning | info
        labels: {team: infra}
        annotations:
          summary: "GPU {{ $labels.gpu }} on {{ $labels.node }} is at {{ $value }} °C"
          remediation: "Check fans and airflow ..."

Annotations use the Prometheus template subset the engine renders (``{{ $labels.x }}``, ``{{ $value }}``,
``| humanize``, ``| humanizePercentage``); ``%threshold%``, ``%clear%``, ``%for%`` and ``%window%`` are
replaced with the rule's own values when it is loaded. ``variants:`` expands one rule into several with
the same name (for instance one per XID code with its own remediation); a variant's single-valued
matchers also become labels of its alerts, so the exported Prometheus rules stay distinct. Every error names the file, the
YAML line, the rule and what is wrong (:class:`exporter.errors.InputError`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from gpufleet.exporter.catalogue import Catalogue, Metric, catalogue
from gpufleet.exporter.errors import InputError

PACK_DIR = Path(__file__).with_name("pack")

KINDS = ("threshold", "increase", "rate", "absent", "stale", "below_inventory", "below_recent_max")
OPS = (">", ">=", "<", "<=", "==", "!=")
SEVERITIES = ("critical", "warning", "info")
SCOPE_OF = {"device": "gpu", "process": "gpu", "node": "node", "fleet": "fleet"}
RULE_KEYS = {"name", "kind", "metric", "match", "op", "threshold", "clear", "window", "for", "severity",
             "labels", "annotations", "threshold_metric", "threshold_on", "new_series", "variants",
             "description"}
VARIANT_KEYS = {"match", "labels", "annotations", "severity", "threshold", "clear", "for", "window"}
OVERRIDE_KEYS = {"threshold", "clear", "for", "window", "severity"}
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# NVML clock event (throttle) reason bits: the bitmask gpufleet_gpu_clock_event_reasons /
# DCGM_FI_DEV_CLOCKS_EVENT_REASONS carries; gpufleet_gpu_clock_event_active{reason} is one bit of it.
REASON_BITS = {
    "gpu_idle": 0x1, "applications_clocks_setting": 0x2, "sw_power_cap": 0x4, "hw_slowdown": 0x8,
    "sync_boost": 0x10, "sw_thermal_slowdown": 0x20, "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80, "display_clock_setting": 0x100,
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> float:
    """'5m', '1h30m', '90s', 300 -> seconds. Raises ValueError on anything else."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip()
    if not text:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h)")
    return total


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest Prometheus duration ('300' -> '5m', '90' -> '90s', '0' -> '0s')."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    s = round(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule (after variants are expanded and overrides applied)."""

    name: str
    kind: str
    metric: Metric
    match: tuple[tuple[str, tuple[str, ...]], ...]
    op: str
    threshold: float
    clear: float | None
    window: float
    for_s: float
    severity: str
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    threshold_metric: Metric | None = None
    threshold_on: tuple[str, ...] = ()
    new_series: bool = False
    description: str = ""
    path: str = ""
    line: int = 0

    @property
    def scope(self) -> str:
        """gpu, node or fleet: what one alert of this rule is about."""
        if self.kind in ("below_inventory", "absent", "below_recent_max") and self.metric.scope != "fleet":
            return "node"
        return SCOPE_OF[self.metric.scope]

    def all_labels(self) -> dict[str, str]:
        """The labels every alert of this rule carries (besides the series labels)."""
        return {"severity": self.severity, "scope": self.scope, **dict(self.labels)}

    def annotation(self, key: str) -> str:
        return dict(self.annotations).get(key, "")

    def cond(self, value: float, active: bool) -> bool:
        """Does ``value`` satisfy the rule (the clear threshold applies while the alert is active)?"""
        limit = self.clear if (active and self.clear is not None) else self.threshold
        return _OPS[self.op](value, limit)


_OPS = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}


@dataclass(slots=True)
class Inhibit:
    """Mute alerts matching ``target`` while an alert matching ``source`` fires with ``equal`` labels equal."""

    source: dict[str, str]
    target: dict[str, str]
    equal: tuple[str, ...]


@dataclass(slots=True)
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    inhibit: list[Inhibit] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return sorted({r.name for r in self.rules})

    def by_name(self, name: str) -> list[Rule]:
        return [r for r in self.rules if r.name == name]


# --------------------------------------------------------------------------- YAML with line numbers


class _Located(dict):  # type: ignore[type-arg]
    """A mapping that remembers the YAML line of itself and of each key."""

    line: int
    key_lines: dict[str, int]


def _build(node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        out = _Located()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for k, v in node.value:
            key = _build(k)
            out[str(key)] = _build(v)
            out.key_lines[str(key)] = k.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v) for v in node.value]
    return yaml.SafeLoader(" ").construct_object(node)  # type: ignore[arg-type]


def _compose(text: str, path: str) -> Any:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path=path,
                         line=mark.line + 1 if mark else None) from None
    return _build(node) if node is not None else None


# --------------------------------------------------------------------------- validation


class _Ctx:
    def __init__(self, path: str, rule: _Located, name: str) -> None:
        self.path, self.rule, self.name = path, rule, name

    def fail(self, message: str, key: str | None = None, at: _Located | None = None) -> InputError:
        where = at if at is not None else self.rule
        line = where.key_lines.get(key, where.line) if key else where.line
        return InputError(f"rule {self.name!r}: {message}", path=self.path, line=line, column=key)


def _match(ctx: _Ctx, raw: Any, at: _Located, key: str = "match") -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ctx.fail("match must be a mapping of label: value or [values]", key, at)
    out: dict[str, tuple[str, ...]] = {}
    for label, value in raw.items():
        if not LABEL_RE.match(label):
            raise ctx.fail(f"match label {label!r} is not a valid label name", key, at)
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, dict | list) or v is None for v in values):
            raise ctx.fail(f"match value of {label!r} must be a string or a list of strings", key, at)
        out[label] = tuple(str(v) for v in values)
    return out


def _str_map(ctx: _Ctx, raw: Any, key: str, at: _Located) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or any(isinstance(v, dict | list) for v in raw.values()):
        raise ctx.fail(f"{key} must be a mapping of name: text", key, at)
    for k in raw:
        if not LABEL_RE.match(k):
            raise ctx.fail(f"{key} name {k!r} is not a valid label name", key, at)
    return {k: str(v) for k, v in raw.items()}


def _number(ctx: _Ctx, raw: Any, key: str, at: _Located) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ctx.fail(f"{key} must be a number, got {raw!r}", key, at)
    return float(raw)


def _duration(ctx: _Ctx, raw: Any, key: str, at: _Located) -> float:
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ctx.fail(f"{key}: {exc}", key, at) from None


def _metric(ctx: _Ctx, cat: Catalogue, raw: Any, key: str) -> Metric:
    if not isinstance(raw, str) or not raw:
        raise ctx.fail(f"{key} is required (a metric name from exporter/catalogue.csv)", key)
    m = cat.by_name(raw)
    if m is None or m.name != raw:
        raise ctx.fail(f"{key} {raw!r} is not a native metric name in the catalogue", key)
    return m


def _one_rule(path: str, raw: Any, cat: Catalogue, overrides: dict[str, dict[str, Any]],
              index: int) -> list[Rule]:
    if not isinstance(raw, _Located):
        raise InputError(f"rule #{index + 1} must be a mapping", path=path)
    name = raw.get("name")
    ctx = _Ctx(path, raw, str(name) if name else f"#{index + 1}")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ctx.fail("name is required and must be a valid alert name (letters, digits, _)", "name")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ctx.fail(f"unknown key {key!r} (allowed: {', '.join(sorted(RULE_KEYS))})", key)
    kind = raw.get("kind", "threshold")
    if kind not in KINDS:
        raise ctx.fail(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", "kind")
    metric = _metric(ctx, cat, raw.get("metric"), "metric")
    if kind in ("increase", "rate") and not metric.is_counter:
        raise ctx.fail(f"{kind} needs a counter; {metric.name} is a {metric.type} "
                       "(alert on the counter, never on a last-value gauge)", "kind")
    if kind == "threshold" and metric.is_counter:
        raise ctx.fail(f"{metric.name} is a counter: use kind increase or rate", "kind")
    if kind == "stale" and not metric.name.endswith("_timestamp_seconds"):
        raise ctx.fail("stale needs a *_timestamp_seconds metric", "metric")
    if kind == "below_inventory" and metric.name != "gpufleet_gpu_up":
        raise ctx.fail("below_inventory works on gpufleet_gpu_up", "metric")
    if kind == "below_recent_max" and metric.scope != "device":
        raise ctx.fail(f"below_recent_max counts a node's GPUs: {metric.name} is not a per-GPU metric", "metric")
    severity = raw.get("severity")
    if severity not in SEVERITIES:
        raise ctx.fail(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}", "severity")
    base: dict[str, Any] = {
        "match": _match(ctx, raw.get("match"), raw),
        "labels": _str_map(ctx, raw.get("labels"), "labels", raw),
        "annotations": _str_map(ctx, raw.get("annotations"), "annotations", raw),
        "severity": severity,
        "for": _duration(ctx, raw.get("for", 0), "for", raw),
        "window": _duration(ctx, raw.get("window", 0), "window", raw),
        "threshold": raw.get("threshold"), "clear": raw.get("clear"),
    }
    for reserved in ("alertname", "severity", "scope"):
        if reserved in base["labels"]:
            raise ctx.fail(f"labels may not set {reserved!r} (use the rule's own field)", "labels")
    tmetric = None
    if raw.get("threshold_metric") is not None:
        tmetric = _metric(ctx, cat, raw.get("threshold_metric"), "threshold_metric")
    threshold_on = raw.get("threshold_on") or []
    if not isinstance(threshold_on, list) or not all(isinstance(v, str) for v in threshold_on):
        raise ctx.fail("threshold_on must be a list of label names", "threshold_on")
    variants = raw.get("variants") or [None]
    if not isinstance(variants, list):
        raise ctx.fail("variants must be a list of mappings", "variants")
    out: list[Rule] = []
    for v in variants:
        spec = dict(base)
        at = raw
        if v is not None:
            if not isinstance(v, _Located):
                raise ctx.fail("each variant must be a mapping", "variants")
            at = v
            bad = set(v) - VARIANT_KEYS
            if bad:
                raise ctx.fail(f"unknown variant key {sorted(bad)[0]!r}", sorted(bad)[0], v)
            vmatch = _match(ctx, v.get("match"), v)
            spec["match"] = {**base["match"], **vmatch}
            # single-valued variant matchers become labels too, so the exported rules stay distinct
            fixed = {k: vals[0] for k, vals in vmatch.items() if len(vals) == 1}
            spec["labels"] = {**base["labels"], **fixed, **_str_map(ctx, v.get("labels"), "labels", v)}
            spec["annotations"] = {**base["annotations"], **_str_map(ctx, v.get("annotations"), "annotations", v)}
            for k in ("severity", "threshold", "clear"):
                if k in v:
                    spec[k] = v[k]
            for k in ("for", "window"):
                if k in v:
                    spec[k] = _duration(ctx, v[k], k, v)
        for ov_key in ("*", name):
            for k, value in (overrides.get(ov_key) or {}).items():
                if k not in OVERRIDE_KEYS:
                    raise ctx.fail(f"override {k!r} is not one of {sorted(OVERRIDE_KEYS)}")
                spec[k] = _duration(ctx, value, k, at) if k in ("for", "window") else value
        out.append(_finish(ctx, at, raw, name, kind, metric, tmetric, tuple(threshold_on), spec, path))
    return out


def _finish(ctx: _Ctx, at: _Located, raw: _Located, name: str, kind: str, metric: Metric,
            tmetric: Metric | None, threshold_on: tuple[str, ...], spec: dict[str, Any], path: str) -> Rule:
    op = raw.get("op", ">")
    if kind == "absent":
        op, threshold = ">", 0.0
        if spec["window"] <= 0:
            raise ctx.fail("absent needs a window (how long a vanished series is remembered)", "window")
    else:
        if op not in OPS:
            raise ctx.fail(f"op must be one of {' '.join(OPS)}, got {op!r}", "op")
        if tmetric is None or spec["threshold"] is not None:
            if spec["threshold"] is None:
                raise ctx.fail("threshold is required", "threshold", at)
            threshold = _number(ctx, spec["threshold"], "threshold", at)
        else:
            threshold = 0.0
    if kind in ("increase", "rate", "below_recent_max") and spec["window"] <= 0:
        raise ctx.fail(f"{kind} needs a window, e.g. window: 5m", "window")
    clear = None
    if spec["clear"] is not None:
        clear = _number(ctx, spec["clear"], "clear", at)
        if op in ("==", "!="):
            raise ctx.fail("clear (hysteresis) needs an ordering op (> >= < <=)", "clear", at)
        if op in (">", ">=") and clear > threshold:
            raise ctx.fail(f"clear {clear:g} must not be above threshold {threshold:g} for op {op}", "clear", at)
        if op in ("<", "<=") and clear < threshold:
            raise ctx.fail(f"clear {clear:g} must not be below threshold {threshold:g} for op {op}", "clear", at)
    if spec["severity"] not in SEVERITIES:
        raise ctx.fail(f"severity must be one of {', '.join(SEVERITIES)}", "severity", at)
    allowed = set(metric.labels)
    for label in spec["match"]:
        if label not in allowed:
            raise ctx.fail(f"match label {label!r} is not a label of {metric.name} "
                           f"(it has: {', '.join(metric.labels) or 'none'})", "match", at)
    if tmetric is not None:
        for label in threshold_on:
            if label not in tmetric.labels or label not in metric.labels:
                raise ctx.fail(f"threshold_on label {label!r} must be a label of both metrics", "threshold_on")
    subst = {"%threshold%": f"{threshold:g}", "%clear%": f"{clear:g}" if clear is not None else "",
             "%for%": format_duration(spec["for"]), "%window%": format_duration(spec["window"])}
    annotations = {}
    for k, text in spec["annotations"].items():
        for token, value in subst.items():
            text = text.replace(token, value)
        annotations[k] = text
    if "summary" not in annotations:
        raise ctx.fail("annotations.summary is required", "annotations", at)
    if "remediation" not in annotations:
        raise ctx.fail("annotations.remediation is required (what should the operator do?)", "annotations", at)
    return Rule(
        name=name, kind=kind, metric=metric, match=tuple(sorted(spec["match"].items())), op=op,
        threshold=threshold, clear=clear, window=spec["window"], for_s=spec["for"],
        severity=spec["severity"], labels=tuple(sorted(spec["labels"].items())),
        annotations=tuple(sorted(annotations.items())), threshold_metric=tmetric,
        threshold_on=threshold_on, new_series=bool(raw.get("new_series", False)),
        description=str(raw.get("description", "")).strip(), path=path, line=at.line,
    )


def _inhibit(path: str, raw: Any) -> Inhibit:
    if not isinstance(raw, _Located) or set(raw) - {"source", "target", "equal"}:
        raise InputError("inhibit entries are mappings with source, target and equal", path=path,
                         line=getattr(raw, "line", None))
    src, tgt, equal = raw.get("source"), raw.get("target"), raw.get("equal") or []
    if not isinstance(src, dict) or not isinstance(tgt, dict) or not isinstance(equal, list):
        raise InputError("inhibit: source and target are label mappings, equal a list", path=path, line=raw.line)
    return Inhibit({k: str(v) for k, v in src.items()}, {k: str(v) for k, v in tgt.items()},
                   tuple(str(e) for e in equal))


def parse_rules(text: str, path: str = "<rules>", *, cat: Catalogue | None = None,
                overrides: dict[str, dict[str, Any]] | None = None) -> RuleSet:
    """Parse one rule file's text; raises InputError naming the rule, line and problem."""
    cat = cat or catalogue()
    doc = _compose(text, path)
    if doc is None:
        return RuleSet(files=[path])
    if not isinstance(doc, _Located):
        raise InputError("a rule file is a mapping with 'rules:' (and optionally 'inhibit:')", path=path, line=1)
    bad = set(doc) - {"rules", "inhibit"}
    if bad:
        key = sorted(bad)[0]
        raise InputError(f"unknown top-level key {key!r}", path=path, line=doc.key_lines[key])
    raw_rules = doc.get("rules") or []
    if not isinstance(raw_rules, list):
        raise InputError("'rules' must be a list", path=path, line=doc.key_lines.get("rules"))
    rs = RuleSet(files=[path])
    for i, raw in enumerate(raw_rules):
        rs.rules.extend(_one_rule(path, raw, cat, overrides or {}, i))
    for raw in doc.get("inhibit") or []:
        rs.inhibit.append(_inhibit(path, raw))
    return rs


def load_rules(paths: list[Path | str] | None = None, *, include_pack: bool = True,
               overrides: dict[str, dict[str, Any]] | None = None, cat: Catalogue | None = None) -> RuleSet:
    """Load the built-in pack (unless ``include_pack`` is False) and extra rule files / folders.

    ``overrides`` maps a rule name (or ``"*"`` for all) to new values of threshold, clear, for, window,
    severity, e.g. ``{"GpuTemperatureHigh": {"threshold": 90, "for": "10m"}}``.
    A later rule with the name of an earlier one is an error unless it comes from a different file
    and the earlier one is from the pack (then it replaces the pack's rule).
    """
    files: list[Path] = sorted(PACK_DIR.glob("*.yaml")) if include_pack else []
    for p in paths or []:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        elif p.exists():
            files.append(p)
        else:
            raise InputError("rule file does not exist", path=str(p))
    out = RuleSet()
    pack = {str(f) for f in files if f.parent == PACK_DIR}
    for f in files:
        rs = parse_rules(f.read_text(encoding="utf-8"), str(f), cat=cat, overrides=overrides)
        for r in rs.rules:
            clash = [o for o in out.rules if o.name == r.name and o.path != r.path]
            if clash and all(o.path in pack for o in clash) and str(f) not in pack:
                out.rules = [o for o in out.rules if o.name != r.name]
            elif clash:
                raise InputError(f"rule {r.name!r}: name already used in {clash[0].path}:{clash[0].line}",
                                 path=r.path, line=r.line)
        out.rules.extend(rs.rules)
        out.inhibit.extend(rs.inhibit)
        out.files.append(str(f))
    return out


def with_overrides(rules: RuleSet, **changes: Any) -> RuleSet:
    """A copy of a rule set with fields of every rule replaced (tests use ``for_s=...``)."""
    return RuleSet([replace(r, **changes) for r in rules.rules], list(rules.inhibit), list(rules.files))
