"""Evaluate rule expressions on live snapshots: the engine's series store.

:class:`SeriesStore` keeps, per node, the latest values of the fields the rules use (nothing else, so a
10,000-GPU fleet stays cheap), the counter history the ``increase`` / ``rate`` windows need, and when
each series was last seen (``absent``). :func:`evaluate_rule` returns the series that satisfy a rule now,
with the same meaning as the PromQL :mod:`alerting.export` writes for it:

- a node whose last snapshot is older than ``stale_after`` has no current series (Prometheus marks a
  failed target's series stale);
- ``increase`` / ``rate`` extrapolate like Prometheus; with ``new_series`` a series that appeared
  within the window after its node was first seen also matches on its current value;
- ``absent`` on a device metric: a node that had series within the window and has none now;
- ``below_inventory``: GPUs of a node listed in its inventory minus those up.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from alerting.rules import Rule, RuleSet
from exporter.schema import Device, Labels, Snapshot

SeriesKey = tuple[str, str, Labels]
"""(node, uuid, extra labels) of one series; uuid is empty for node / fleet series."""

# Fields the exporter's sink derives from the snapshot rather than from samples.
DERIVED = ("up", "snapshot_age", "collector_success", "collector_last_success", "collector_duration")


@dataclass(slots=True)
class NodeData:
    ts: float
    first_ts: float
    devices: dict[str, Device] = field(default_factory=dict)
    series: dict[str, dict[tuple[str, Labels], float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    """One series that satisfies a rule now."""

    key: SeriesKey
    value: float
    threshold: float | None


class SeriesStore:
    """The latest values per node of the fields a rule set needs, plus counter history."""

    def __init__(self, rules: RuleSet, stale_after: float = 30.0) -> None:
        self.stale_after = stale_after
        self.nodes: dict[str, NodeData] = {}
        self.history: dict[tuple[str, SeriesKey], deque[tuple[float, float]]] = {}
        self.first_seen: dict[tuple[str, SeriesKey], float] = {}
        self.last_seen: dict[tuple[str, str], tuple[float, int]] = {}  # (field, node) -> (ts, series)
        self.set_rules(rules)

    def set_rules(self, rules: RuleSet) -> None:
        self.fields: set[str] = set()
        self.counter_windows: dict[str, float] = {}
        self.absent_fields: set[str] = set()
        for r in rules.rules:
            self.fields.add(r.metric.field)
            if r.threshold_metric is not None:
                self.fields.add(r.threshold_metric.field)
            if r.kind in ("increase", "rate"):
                self.counter_windows[r.metric.field] = max(self.counter_windows.get(r.metric.field, 0.0), r.window)
            if r.kind == "absent":
                self.absent_fields.add(r.metric.field)

    # ------------------------------------------------------------------ ingest
    def observe(self, snap: Snapshot) -> None:
        """Take one snapshot (replaces the previous values of its node or nodes).

        A snapshot that holds the GPUs of several nodes (the twin as one source) is split by each
        device's node, so alerts carry the GPU's own node, as the exporter's ``node`` label does.
        """
        nodes = {d.node for d in snap.devices}
        if nodes and nodes != {snap.node}:
            for part in _split(snap, nodes):
                self._observe(part)
        else:
            self._observe(snap)

    def _observe(self, snap: Snapshot) -> None:
        old = self.nodes.get(snap.node)
        nd = NodeData(ts=snap.ts, first_ts=old.first_ts if old else snap.ts,
                      devices={d.uuid: d for d in snap.devices})
        series = {f: {} for f in self.fields}  # type: dict[str, dict[tuple[str, Labels], float]]
        for s in snap.samples:
            d = series.get(s.field)
            if d is not None:
                d[(s.uuid, s.labels)] = s.value
        if "up" in series and snap.up:
            for uuid, upv in snap.up.items():
                series["up"][(uuid, ())] = float(upv)
        if "collector_success" in series or "collector_last_success" in series:
            for st in snap.stats:
                lab = (("collector", st.collector),)
                if "collector_success" in series:
                    series["collector_success"][("", lab)] = 1.0 if st.success else 0.0
                if "collector_last_success" in series and st.success:
                    series["collector_last_success"][("", lab)] = st.ts
        if "snapshot_age" in series and not series["snapshot_age"]:
            series["snapshot_age"][("", ())] = math.nan  # NaN: derive it at evaluation time
        nd.series = series
        self.nodes[snap.node] = nd
        for f in self.absent_fields:
            if series.get(f):
                self.last_seen[(f, snap.node)] = (snap.ts, len(series[f]))
        for f, window in self.counter_windows.items():
            for (uuid, labels), v in series.get(f, {}).items():
                hk = (f, (snap.node, uuid, labels))
                h = self.history.get(hk)
                if h is None:
                    h = self.history[hk] = deque()
                    self.first_seen[hk] = snap.ts
                h.append((snap.ts, v))
                while h and h[0][0] < snap.ts - window - self.stale_after:
                    h.popleft()

    def fresh(self, node: str, now: float) -> bool:
        nd = self.nodes.get(node)
        return nd is not None and now - nd.ts <= self.stale_after

    def device(self, node: str, uuid: str) -> Device | None:
        nd = self.nodes.get(node)
        return nd.devices.get(uuid) if nd else None

    # ------------------------------------------------------------------ evaluation
    def _increase(self, f: str, key: SeriesKey, now: float, window: float, is_rate: bool) -> float | None:
        """Prometheus' extrapolated increase / rate over ``window`` at ``now`` (None: under 2 samples)."""
        h = self.history.get((f, key))
        if not h:
            return None
        start = now - window
        pts = [(t, v) for t, v in h if start <= t <= now]
        if len(pts) < 2:
            return None
        first_t, first_v = pts[0]
        last_t, last_v = pts[-1]
        result = last_v - first_v
        prev = first_v
        for _, v in pts:
            if v < prev:
                result += prev
            prev = v
        to_start, to_end = first_t - start, now - last_t
        sampled = last_t - first_t
        if sampled <= 0:
            return None
        avg = sampled / (len(pts) - 1)
        if result > 0 and first_v >= 0:
            to_zero = sampled * (first_v / result)
            to_start = min(to_start, to_zero)
        limit = avg * 1.1
        interval = sampled
        interval += to_start if to_start < limit else avg / 2
        interval += to_end if to_end < limit else avg / 2
        result = result * (interval / sampled)
        return result / window if is_rate else result

    def _is_new(self, f: str, key: SeriesKey, now: float, window: float, node_first: float) -> bool:
        """A series that appeared within the window, after its node was first seen (PromQL: M unless M offset W)."""
        first = self.first_seen.get((f, key))
        return first is not None and first > node_first and first > now - window

    def evaluate(self, rule: Rule, now: float, active: set[SeriesKey]) -> list[Hit]:
        """The series satisfying ``rule`` at ``now``; ``active`` holds the keys already pending or firing."""
        f = rule.metric.field
        out: list[Hit] = []
        if rule.kind == "absent":
            for (field_id, node), (seen, count) in self.last_seen.items():
                if field_id != f or now - seen > rule.window:
                    continue
                nd = self.nodes.get(node)
                present = nd is not None and self.fresh(node, now) and bool(nd.series.get(f))
                if not present:  # value: how many series vanished (PromQL: count by (node) ...)
                    out.append(Hit((node, "", ()), float(count), None))
            return out
        match = rule.match
        cache: dict[Labels, bool] = {}
        for node, nd in self.nodes.items():
            if now - nd.ts > self.stale_after:
                continue
            series = nd.series.get(f)
            if not series:
                continue
            if rule.kind == "below_inventory":
                missing = float(sum(1 for v in series.values() if v == 0))
                key: SeriesKey = (node, "", ())
                if rule.cond(missing, key in active):
                    out.append(Hit(key, missing, rule.threshold))
                continue
            limits: dict[tuple[tuple[str, str], ...], float] | None = None
            if rule.threshold_metric is not None:
                limits = {}
                for other in self.nodes.values():
                    for (_, lab), v in (other.series.get(rule.threshold_metric.field) or {}).items():
                        ld = dict(lab)
                        limits[tuple((k, ld.get(k, "")) for k in rule.threshold_on)] = v
            op, thr, clear = rule.cond, rule.threshold, rule.clear
            for (uuid, labels), raw in series.items():
                if match:
                    ok = cache.get(labels)
                    if ok is None:
                        ld = dict(labels)
                        ok = cache[labels] = all(ld.get(k) in vals for k, vals in match)
                    if not ok:
                        continue
                key = (node, uuid, labels)
                value = raw
                if rule.kind in ("increase", "rate"):
                    inc = self._increase(f, key, now, rule.window, rule.kind == "rate")
                    if inc is None or not _cmp(rule.op, inc, thr):
                        if not (rule.new_series and self._is_new(f, key, now, rule.window, nd.first_ts)
                                and _cmp(rule.op, raw, thr)):
                            continue
                    else:
                        value = inc
                elif f == "snapshot_age" and math.isnan(raw):
                    value = now - nd.ts
                elif rule.kind == "stale":
                    value = now - raw
                limit = thr
                if limits is not None:
                    ld = dict(labels)
                    lim = limits.get(tuple((k, ld.get(k, "")) for k in rule.threshold_on))
                    if lim is None:
                        continue
                    limit = lim
                    if not _cmp(rule.op, value, lim):
                        continue
                elif clear is None:
                    if not _cmp(rule.op, value, thr):
                        continue
                elif not op(value, key in active):
                    continue
                out.append(Hit(key, value, limit))
        return out


def _split(snap: Snapshot, nodes: set[str]) -> list[Snapshot]:
    node_of = {d.uuid: d.node for d in snap.devices}
    parts = {n: Snapshot(ts=snap.ts, node=n, stats=list(snap.stats)) for n in nodes}
    parts.setdefault(snap.node, Snapshot(ts=snap.ts, node=snap.node, stats=list(snap.stats)))
    for d in snap.devices:
        parts[d.node].devices.append(d)
    for s in snap.samples:
        parts[node_of.get(s.uuid, snap.node)].samples.append(s)
    for uuid, v in snap.up.items():
        parts[node_of.get(uuid, snap.node)].up[uuid] = v
    return list(parts.values())


def _cmp(op: str, a: float, b: float) -> bool:
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == "==":
        return a == b
    return a != b
