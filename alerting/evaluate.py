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
- ``below_inventory``: GPUs of a node listed in its inventory minus those up;
- ``below_recent_max``: GPUs of a node with a series within the window minus those with one now
  (PromQL: ``count by (node) (max_over_time(M[W])) - count by (node) (M)``).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress

from gpufleet.alerting.rules import REASON_BITS, Rule, RuleSet
from gpufleet.exporter.schema import Device, Labels, Snapshot

SeriesKey = tuple[str, str, Labels]
"""(node, uuid, extra labels) of one series; uuid is empty for node / fleet series."""

# Fields the exporter's sink derives from the snapshot rather than from samples.
DERIVED = ("up", "snapshot_age", "collector_success", "collector_last_success", "collector_duration")


@dataclass(slots=True)
class NodeData:
    ts: float
    first_ts: float
    devices: dict[str, Device] = field(default_factory=dict)
    series: dict[str, dict[Labels, dict[str, float]]] = field(default_factory=dict)  # field -> labels -> uuid


@dataclass(frozen=True, slots=True)
class Hit:
    """One series that satisfies a rule now."""

    key: SeriesKey
    value: float
    threshold: float | None


def _matches(labels: Labels, match: tuple[tuple[str, tuple[str, ...]], ...], cache: dict[Labels, bool]) -> bool:
    """Whether a series' labels satisfy a rule's ``match`` (memoised per label set for one evaluation)."""
    ok = cache.get(labels)
    if ok is None:
        ld = dict(labels)
        ok = cache[labels] = all(ld.get(k) in vals for k, vals in match)
    return ok


class SeriesStore:
    """The latest values per node of the fields a rule set needs, plus counter history."""

    def __init__(self, rules: RuleSet, stale_after: float = 30.0) -> None:
        self.stale_after = stale_after
        self.nodes: dict[str, NodeData] = {}
        self.history: dict[tuple[str, SeriesKey], deque[tuple[float, float]]] = {}
        self.first_seen: dict[tuple[str, SeriesKey], float] = {}
        self._pruned = 0.0
        self._mask_sources: dict[str, bool] = {}
        self.recent: dict[str, dict[SeriesKey, float]] = {}  # field -> series -> last time its value changed
        self.last_seen: dict[tuple[str, str], tuple[float, int]] = {}  # (field, node) -> (ts, series)
        self.series_seen: dict[tuple[str, str], dict[tuple[str, Labels], float]] = {}  # (field, node) -> series -> ts
        self.set_rules(rules)

    def set_rules(self, rules: RuleSet) -> None:
        self.fields: set[str] = set()
        self.counter_windows: dict[str, float] = {}
        self.absent_fields: set[str] = set()
        self.recent_max_windows: dict[str, float] = {}
        for r in rules.rules:
            self.fields.add(r.metric.field)
            if r.threshold_metric is not None:
                self.fields.add(r.threshold_metric.field)
            if r.kind in ("increase", "rate"):
                self.counter_windows[r.metric.field] = max(self.counter_windows.get(r.metric.field, 0.0), r.window)
            if r.kind == "absent":
                self.absent_fields.add(r.metric.field)
            if r.kind == "below_recent_max":
                self.recent_max_windows[r.metric.field] = max(self.recent_max_windows.get(r.metric.field, 0.0),
                                                              r.window)
        # clock_event_active{reason} is one bit of clock_event_reasons: from a source that sends the
        # bitmask, read one sample per GPU instead of one per reason.
        self.reason_bits: dict[str, int] = {}
        for r in rules.rules:
            if r.metric.field == "clock_event_active":
                reasons = dict(r.match).get("reason") or tuple(REASON_BITS)
                self.reason_bits.update({x: REASON_BITS[x] for x in reasons if x in REASON_BITS})
        self.fields_masked = self.fields - {"clock_event_active"}
        if self.reason_bits:
            self.fields_masked = self.fields_masked | {"clock_event_reasons"}

    # ------------------------------------------------------------------ ingest
    def observe(self, snap: Snapshot) -> None:
        """Take one snapshot (replaces the previous values of its node or nodes).

        Only the fields the rules use are kept. A snapshot that holds the GPUs of several nodes (the
        twin as one source) is split by each device's node, so alerts carry the GPU's own node, as the
        exporter's ``node`` label does.
        """
        masked = self.reason_bits and self._mask_sources.get(snap.node, False)
        wanted = self.fields_masked if masked else self.fields | ({"clock_event_reasons"} if self.reason_bits else set())
        samples = snap.samples
        kept = list(compress(samples, map(wanted.__contains__, map(_FIELD, samples))))
        node_of = {d.uuid: d.node for d in snap.devices}
        default = snap.node
        per_node: dict[str, dict[str, dict[Labels, dict[str, float]]]] = {}
        last: str | None = None
        cur: dict[str, dict[Labels, dict[str, float]]] = {}
        for smp in kept:
            n = node_of.get(smp.uuid, default)
            if n != last:
                got = per_node.get(n)
                cur = per_node[n] = {} if got is None else got
                last = n
            by_labels = cur.get(smp.field)
            if by_labels is None:
                by_labels = cur[smp.field] = {}
            group = by_labels.get(smp.labels)
            if group is None:
                group = by_labels[smp.labels] = {}
            group[smp.uuid] = smp.value
        devs: dict[str, dict[str, Device]] = {}
        for d in snap.devices:
            devs.setdefault(d.node, {})[d.uuid] = d
        for n in (*devs, default):
            per_node.setdefault(n, {})
        if self.reason_bits:
            self._mask_sources[default] = self._from_mask(per_node)
        if "up" in wanted:
            for uuid, v in snap.up.items():
                per_node[node_of.get(uuid, default)].setdefault("up", {}).setdefault((), {})[uuid] = float(v)
        own = per_node[default]
        for st in snap.stats:
            lab = (("collector", st.collector),)
            if "collector_success" in wanted:
                own.setdefault("collector_success", {}).setdefault(lab, {})[""] = 1.0 if st.success else 0.0
            if "collector_duration" in wanted:
                own.setdefault("collector_duration", {}).setdefault(lab, {})[""] = st.duration_s
            if "collector_last_success" in wanted and st.success:
                own.setdefault("collector_last_success", {}).setdefault(lab, {})[""] = st.ts
        if "snapshot_age" in wanted and "snapshot_age" not in own:
            own["snapshot_age"] = {(): {"": math.nan}}  # NaN: derive it at evaluation time
        for n, series in per_node.items():
            self._store(n, snap.ts, devs.get(n, {}), series)
        if snap.ts - self._pruned > 60.0:
            self._pruned = snap.ts
            for f, recent in self.recent.items():
                horizon = snap.ts - self.counter_windows.get(f, 0.0) - self.stale_after
                for key in [k for k, t in recent.items() if t < horizon]:
                    del recent[key]

    def _from_mask(self, per_node: dict[str, dict[str, dict[Labels, dict[str, float]]]]) -> bool:
        """Derive clock_event_active{reason} from the bitmask; True when the snapshot carried it."""
        seen = False
        for series in per_node.values():
            take = series.get if "clock_event_reasons" in self.fields else series.pop
            masks = take("clock_event_reasons", {}).get(())
            if not masks:
                continue
            seen = True
            series["clock_event_active"] = {
                (("reason", reason),): {u: 1.0 if int(m) & bit else 0.0 for u, m in masks.items()}
                for reason, bit in self.reason_bits.items()}
        return seen

    def _store(self, node: str, ts: float, devices: dict[str, Device],
               series: dict[str, dict[Labels, dict[str, float]]]) -> None:
        old = self.nodes.get(node)
        self.nodes[node] = NodeData(ts=ts, first_ts=old.first_ts if old else ts, devices=devices, series=series)
        for f in self.absent_fields:
            if f in series:
                self.last_seen[(f, node)] = (ts, sum(len(g) for g in series[f].values()))
        for f, window in self.recent_max_windows.items():
            seen = self.series_seen.setdefault((f, node), {})
            for labels, group in series.get(f, {}).items():
                for uuid in group:
                    seen[(uuid, labels)] = ts
            for k in [k for k, t in seen.items() if t < ts - window - self.stale_after]:
                del seen[k]
        for f, window in self.counter_windows.items():
            horizon = ts - window - self.stale_after
            recent = self.recent.setdefault(f, {})
            for labels, group in series.get(f, {}).items():
                for uuid, v in group.items():
                    key = (node, uuid, labels)
                    hk = (f, key)
                    h = self.history.get(hk)
                    if h is None:
                        h = self.history[hk] = deque()
                        self.first_seen[hk] = ts
                        if old is not None:  # a new series of a known node (see new_series)
                            recent[key] = ts
                    elif v != h[-1][1]:
                        recent[key] = ts
                    h.append((ts, v))
                    if h[0][0] < horizon:
                        while h[0][0] < horizon:
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
        hk = (f, key)
        h = self.history.get(hk)
        if not h:
            return None
        start = now - window
        if self.recent.get(f, {}).get(key, now) < start and len(h) >= 2 and h[-2][0] >= start and h[-1][0] <= now:
            return 0.0  # flat over the whole window: Prometheus gives exactly 0 as well
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
                present = nd is not None and self.fresh(node, now) and f in nd.series
                if not present:  # value: how many series vanished (PromQL: count by (node) ...)
                    out.append(Hit((node, "", ()), float(count), None))
            return out
        match = rule.match
        cache: dict[Labels, bool] = {}
        opf = OP_FUNCS[rule.op]
        thr, clear = rule.threshold, rule.clear
        limits = self._limits(rule) if rule.threshold_metric is not None else None
        plain = rule.kind == "threshold" and clear is None and limits is None
        stale_before = now - self.stale_after
        if rule.kind in ("increase", "rate") and not opf(0.0, thr):
            return self._changed_hits(rule, now, opf, match, cache)
        for node, nd in self.nodes.items():
            if nd.ts < stale_before:
                continue
            groups = nd.series.get(f)
            if not groups:
                continue
            if rule.kind == "below_recent_max":
                now_count = sum(len(g) for g in groups.values())
                horizon = now - rule.window
                seen_at = self.series_seen.get((f, node), {})
                gone = float(sum(1 for t in seen_at.values() if t >= horizon) - now_count)
                key: SeriesKey = (node, "", ())
                if rule.cond(gone, key in active):
                    out.append(Hit(key, gone, thr))
                continue
            if rule.kind == "below_inventory":
                missing = float(sum(1 for g in groups.values() for v in g.values() if v == 0))
                key = (node, "", ())
                if rule.cond(missing, key in active):
                    out.append(Hit(key, missing, thr))
                continue
            for labels, group in groups.items():
                if match and not _matches(labels, match, cache):
                    continue
                if plain:
                    for uuid, v in group.items():
                        if opf(v, thr) and not (v != v and f == "snapshot_age"):
                            out.append(Hit((node, uuid, labels), v, thr))
                    if f == "snapshot_age" and "" in group and group[""] != group[""]:
                        age = now - nd.ts
                        if opf(age, thr):
                            out.append(Hit((node, "", labels), age, thr))
                    continue
                limit = thr
                if limits is not None:
                    ld = dict(labels)
                    lim = limits.get(tuple((k, ld.get(k, "")) for k in rule.threshold_on))
                    if lim is None:
                        continue
                    limit = lim
                for uuid, raw in group.items():
                    key = (node, uuid, labels)
                    value = raw
                    if rule.kind in ("increase", "rate"):
                        inc = self._increase(f, key, now, rule.window, rule.kind == "rate")
                        if inc is None or not opf(inc, thr):
                            if rule.new_series and self._is_new(f, key, now, rule.window, nd.first_ts) \
                                    and opf(raw, thr):
                                out.append(Hit(key, raw, thr))
                            continue
                        value = inc
                    elif rule.kind == "stale":
                        value = now - raw
                    if clear is not None and key in active:
                        if opf(value, clear):
                            out.append(Hit(key, value, limit))
                    elif opf(value, limit):
                        out.append(Hit(key, value, limit))
        return out

    def _changed_hits(self, rule: Rule, now: float, opf: Callable[[float, float], bool],
                      match: tuple[tuple[str, tuple[str, ...]], ...], cache: dict[Labels, bool]) -> list[Hit]:
        """increase / rate hits among the series whose value changed within the window (the others are 0)."""
        f, thr, out = rule.metric.field, rule.threshold, []
        start = now - rule.window
        for key, changed in self.recent.get(f, {}).items():
            if changed < start:
                continue
            node, uuid, labels = key
            nd = self.nodes.get(node)
            if nd is None or now - nd.ts > self.stale_after:
                continue
            raw = nd.series.get(f, {}).get(labels, {}).get(uuid)
            if raw is None:
                continue
            if match and not _matches(labels, match, cache):
                continue
            inc = self._increase(f, key, now, rule.window, rule.kind == "rate")
            if inc is not None and opf(inc, thr):
                out.append(Hit(key, inc, thr))
            elif rule.new_series and self._is_new(f, key, now, rule.window, nd.first_ts) and opf(raw, thr):
                out.append(Hit(key, raw, thr))
        return out

    def _limits(self, rule: Rule) -> dict[tuple[tuple[str, str], ...], float]:
        assert rule.threshold_metric is not None
        limits: dict[tuple[tuple[str, str], ...], float] = {}
        for other in self.nodes.values():
            for lab, group in (other.series.get(rule.threshold_metric.field) or {}).items():
                ld = dict(lab)
                for v in group.values():
                    limits[tuple((k, ld.get(k, "")) for k in rule.threshold_on)] = v
        return limits


_FIELD = operator.attrgetter("field")
OP_FUNCS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
            "!=": operator.ne}
