"""The alert engine: rule evaluation on live snapshots, alert states, grouping, inhibition, silences.

Lifecycle of one alert (one rule x one series): inactive -> pending (condition true) -> firing
(true for the rule's ``for``) -> resolved (condition false; a resolved notification goes out if the
firing one did). While an alert is active its rule's clear threshold applies (hysteresis).

Notifications are grouped (by ``group_by`` labels; node and alertname by default): a group notifies
when it has newly firing or newly resolved alerts (at most once per ``group_interval``), and repeats
its firing alerts every ``repeat_interval``. An alert already notified is not notified again
(deduplication). Inhibition rules mute targets while a matching source fires (a node whose exporter is
down mutes its GPUs' alerts; a firing critical alert of a GPU mutes that GPU's warnings); silences
mute what they match until their end time. Muted alerts keep their state but send nothing.

State (alerts and group send times) is saved to ``state.json`` in the state folder after each change
(or, with a ``state_backend`` — the service's database — as one row per changed alert or group),
so a restart neither pages again for an alert already notified nor forgets one that is firing.
The engine keeps running on the last good rules when a reloaded rule file is bad.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from gpufleet.alerting.evaluate import SeriesKey, SeriesStore
from gpufleet.alerting.rules import Rule, RuleSet
from gpufleet.alerting.silences import SilenceStore
from gpufleet.alerting.templating import render
from gpufleet.exporter.errors import GpufleetError
from gpufleet.exporter.schema import Snapshot

log = logging.getLogger(__name__)

DEFAULT_GROUP_BY = ("alertname", "node")
STATE_VERSION = 1


@dataclass(slots=True)
class Alert:
    """One alert instance (a rule applied to one series)."""

    key: str
    rule: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str  # pending | firing | resolved
    value: float
    threshold: float | None
    active_since: float
    fired_at: float | None = None
    resolved_at: float | None = None
    notified_at: float | None = None
    resolved_notified: bool = False
    muted_by: str = ""
    last_eval: float = 0.0
    rid: str = ""
    series: list[Any] = field(default_factory=list)  # [node, uuid, [[label, value], ...]]

    def series_key(self) -> SeriesKey:
        node, uuid, labels = self.series
        return (node, uuid, tuple((str(k), str(v)) for k, v in labels))

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Notification:
    """What one group sends at once: its firing alerts and the alerts that resolved."""

    group_key: str
    group_labels: dict[str, str]
    firing: list[Alert]
    resolved: list[Alert]
    ts: float

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"

    @property
    def alerts(self) -> list[Alert]:
        return [*self.firing, *self.resolved]

    def common_labels(self) -> dict[str, str]:
        alerts = self.alerts
        if not alerts:
            return dict(self.group_labels)
        common = dict(alerts[0].labels)
        for a in alerts[1:]:
            common = {k: v for k, v in common.items() if a.labels.get(k) == v}
        return common


@dataclass(slots=True)
class EngineConfig:
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    group_wait: float = 0.0
    group_interval: float = 60.0
    repeat_interval: float = 4 * 3600.0
    stale_after: float = 30.0
    resolved_retention: float = 900.0
    startup_grace: float = 60.0
    dashboard_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _copy(a: Alert) -> Alert:
    """A frozen view of an alert for a notification (the live alert keeps changing)."""
    return replace(a, labels=dict(a.labels), annotations=dict(a.annotations), series=list(a.series))


def _rule_id(rule: Rule) -> str:
    return rule.name + "[" + ",".join(f"{k}={'|'.join(v)}" for k, v in rule.match) + "]"


def _key_str(rule: Rule, key: SeriesKey) -> str:
    node, uuid, labels = key
    extra = ",".join(f"{k}={v}" for k, v in labels)
    return f"{_rule_id(rule)}|{node}|{uuid}|{extra}"


class AlertStateBackend(Protocol):
    """Row storage for alert state (the service's database, ``gpufleet.state``): alerts as
    :meth:`Alert.public` dicts by ``key``, notification groups' last send times."""

    def load(self) -> tuple[list[dict[str, Any]], dict[str, float]]: ...
    def write(self, alerts: Sequence[Mapping[str, Any]], removed: Iterable[str], groups: Mapping[str, float]) -> None: ...


class AlertEngine:
    """Evaluate a rule set on snapshots; hand notifications to ``notify`` (a callable)."""

    def __init__(self, rules: RuleSet, *, config: EngineConfig | None = None,
                 state_dir: Path | str | None = None, silences: SilenceStore | None = None,
                 notify: Callable[[Notification], Any] | None = None,
                 reload: Callable[[], RuleSet] | None = None, clock: Callable[[], float] = time.time,
                 state_backend: AlertStateBackend | None = None) -> None:
        self.config = config or EngineConfig()
        self.state_backend = state_backend
        self._saved_alerts: dict[str, dict[str, Any]] = {}
        self._saved_groups: dict[str, float] = {}
        self.rules = rules
        self.store = SeriesStore(rules, stale_after=self.config.stale_after)
        self.state_dir = Path(state_dir) if state_dir else None
        self.silences = silences or (SilenceStore(self.state_dir / "silences.json") if self.state_dir else None)
        self.notify = notify
        self._reload = reload
        self.reload_error: str | None = None
        self.alerts: dict[str, Alert] = {}
        self.groups: dict[str, float] = {}  # group key -> last notification time
        self.sent: list[Notification] = []
        self.started: float | None = None  # the first evaluation time (the engine's own clock)
        self._clock = clock
        self._dirty = False
        self._rule_stamps = self._stamps()
        self._load_state()

    # ------------------------------------------------------------------ rules
    def reload_rules(self) -> bool:
        """Reload rules through the loader; on a bad file keep the last good rules (returns False)."""
        if self._reload is None:
            return True
        try:
            rules = self._reload()
        except GpufleetError as exc:
            self.reload_error = str(exc)
            log.error("rule reload failed, keeping the last good rules: %s", exc)
            return False
        self.set_rules(rules)
        self._rule_stamps = self._stamps()
        self.reload_error = None
        return True

    def _stamps(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for f in self.rules.files:
            try:
                out[f] = os.stat(f).st_mtime
            except OSError:
                out[f] = -1.0
        return out

    def maybe_reload(self) -> None:
        """Reload the rules when one of their files changed (a bad file keeps the last good rules)."""
        if self._reload is None:
            return
        stamps = self._stamps()
        if stamps != self._rule_stamps:
            self._rule_stamps = stamps
            self.reload_rules()

    def set_rules(self, rules: RuleSet) -> None:
        self.rules = rules
        self.store.set_rules(rules)
        names = {r.name for r in rules.rules}
        for k in [k for k, a in self.alerts.items() if a.rule not in names and a.state == "pending"]:
            del self.alerts[k]

    # ------------------------------------------------------------------ ingest / evaluate
    def observe(self, snapshots: Snapshot | Iterable[Snapshot]) -> None:
        for s in [snapshots] if isinstance(snapshots, Snapshot) else snapshots:
            self.store.observe(s)

    def step(self, snapshots: Snapshot | Iterable[Snapshot] = (), now: float | None = None) -> list[Notification]:
        """Observe snapshots, evaluate, notify and persist. Returns the notifications sent."""
        self.maybe_reload()
        self.observe(snapshots)
        now = self._clock() if now is None else now
        self.evaluate(now)
        notes = self.notifications(now)
        for n in notes:
            self.sent.append(n)
            if self.notify is not None:
                try:
                    self.notify(n)
                except Exception:  # a notifier bug must never stop the engine
                    log.exception("notifier failed for group %s", n.group_key)
        del self.sent[:-100]
        self.save_state()
        return notes

    def _labels(self, rule: Rule, key: SeriesKey) -> dict[str, str]:
        node, uuid, extra = key
        labels: dict[str, str] = {"alertname": rule.name}
        if rule.scope in ("gpu", "node"):
            labels["node"] = node
        if uuid:
            labels["uuid"] = uuid
            d = self.store.device(node, uuid)
            if d is not None:
                labels["gpu"] = str(d.index)
                labels["model"] = d.model
        labels.update(extra)
        labels.update(rule.all_labels())
        return labels

    def evaluate(self, now: float) -> None:
        """Advance every alert's state to ``now``."""
        if self.started is None:
            self.started = now
        active_by_rule: dict[str, set[SeriesKey]] = {}
        for a in self.alerts.values():
            if a.state != "resolved" and a.series:
                active_by_rule.setdefault(a.rid, set()).add(a.series_key())
        seen: set[str] = set()
        for rule in self.rules.rules:
            rid = _rule_id(rule)
            active = active_by_rule.get(rid, set())
            for hit in self.store.evaluate(rule, now, active):
                k = _key_str(rule, hit.key)
                seen.add(k)
                found = self.alerts.get(k)
                if found is not None and found.state != "resolved":
                    a = found
                else:
                    labels = self._labels(rule, hit.key)
                    node, uuid, extra = hit.key
                    a = self.alerts[k] = Alert(k, rule.name, labels, {}, "pending", hit.value, hit.threshold, now,
                                               rid=rid, series=[node, uuid, [list(kv) for kv in extra]])
                    self._dirty = True
                if not a.annotations or hit.value != a.value:
                    a.annotations = {n: render(t, a.labels, hit.value) for n, t in rule.annotations}
                a.value, a.threshold, a.last_eval = hit.value, hit.threshold, now
                if a.state == "pending" and now - a.active_since >= rule.for_s:
                    a.state, a.fired_at = "firing", now
                    self._dirty = True
        for k, a in list(self.alerts.items()):
            if k in seen or a.state == "resolved":
                continue
            if not self._can_resolve(a, now):
                continue
            if a.state == "pending":
                del self.alerts[k]
            else:
                a.state, a.resolved_at = "resolved", now
            self._dirty = True
        for k, a in list(self.alerts.items()):
            if a.state == "resolved" and (a.notified_at is None or a.resolved_notified) and \
                    now - (a.resolved_at or now) >= self.config.resolved_retention:
                del self.alerts[k]
                self._dirty = True
        self._mute(now)

    def _can_resolve(self, a: Alert, now: float) -> bool:
        """Resolve only on evidence: right after a restart, wait until the alert's node (or, for a fleet
        alert, its metric) has been seen again, so a restart never resolves and re-pages."""
        if self.started is None or now - self.started >= self.config.startup_grace:
            return True
        node = a.labels.get("node")
        if node is not None:
            return node in self.store.nodes
        fields = {r.metric.field for r in self.rules.by_name(a.rule)}
        return any(f in nd.series for nd in self.store.nodes.values() for f in fields)

    def _mute(self, now: float) -> None:
        firing = [a for a in self.alerts.values() if a.state == "firing"]
        for a in self.alerts.values():
            a.muted_by = ""
        for rule in self.rules.inhibit:
            sources = {tuple(a.labels.get(e, "") for e in rule.equal)
                       for a in firing if all(a.labels.get(k) == v for k, v in rule.source.items())}
            if not sources:
                continue
            for a in self.alerts.values():
                if a.state == "resolved" or a.muted_by:
                    continue
                if all(a.labels.get(k) == v for k, v in rule.target.items()) and \
                        tuple(a.labels.get(e, "") for e in rule.equal) in sources:
                    a.muted_by = "inhibited by " + ",".join(f"{k}={v}" for k, v in rule.source.items())
        if self.silences is not None:
            for a in self.alerts.values():
                if a.state != "resolved" and not a.muted_by:
                    s = self.silences.silencing(a.labels, now)
                    if s is not None:
                        a.muted_by = f"silenced by {s.id}"

    # ------------------------------------------------------------------ grouping and notification
    def _group(self, a: Alert) -> tuple[str, dict[str, str]]:
        gl = {k: a.labels[k] for k in self.config.group_by if k in a.labels}
        return ",".join(f"{k}={v}" for k, v in sorted(gl.items())), gl

    def notifications(self, now: float) -> list[Notification]:
        """Decide which groups notify now and mark their alerts as notified."""
        groups: dict[str, tuple[dict[str, str], list[Alert]]] = {}
        for a in self.alerts.values():
            gk, gl = self._group(a)
            groups.setdefault(gk, (gl, []))[1].append(a)
        out: list[Notification] = []
        cfg = self.config
        for gk, (gl, alerts) in sorted(groups.items()):
            firing = [a for a in alerts if a.state == "firing" and not a.muted_by]
            new = [a for a in firing if a.notified_at is None]
            resolved = [a for a in alerts if a.state == "resolved" and a.notified_at is not None
                        and not a.resolved_notified]
            last = self.groups.get(gk)
            due = False
            if new or resolved:
                if last is None:
                    first = min((a.fired_at or now) for a in new) if new else now
                    due = now - first >= cfg.group_wait
                else:
                    due = now - last >= cfg.group_interval
            if firing and last is not None and now - last >= cfg.repeat_interval:
                due = True
            if not due:
                continue
            for a in firing:
                a.notified_at = now
            for a in resolved:
                a.resolved_notified = True
            self.groups[gk] = now
            self._dirty = True
            out.append(Notification(gk, gl, [_copy(a) for a in sorted(firing, key=lambda x: x.key)],
                                    [_copy(a) for a in sorted(resolved, key=lambda x: x.key)], now))
        for gk in [g for g in self.groups if g not in groups]:
            del self.groups[gk]
            self._dirty = True
        return out

    # ------------------------------------------------------------------ queries
    def firing(self, include_muted: bool = True) -> list[Alert]:
        return sorted((a for a in self.alerts.values() if a.state == "firing" and (include_muted or not a.muted_by)),
                      key=lambda a: a.key)

    def pending(self) -> list[Alert]:
        return sorted((a for a in self.alerts.values() if a.state == "pending"), key=lambda a: a.key)

    def firing_counts(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for a in self.alerts.values():
            if a.state == "firing":
                k = (a.labels["alertname"], a.labels.get("severity", ""))
                out[k] = out.get(k, 0) + 1
        return out

    # ------------------------------------------------------------------ persistence
    @property
    def state_path(self) -> Path | None:
        return self.state_dir / "state.json" if self.state_dir else None

    def save_state(self, force: bool = False) -> None:
        if self.state_backend is not None:
            if self._dirty or force:
                self._save_rows()
            return
        path = self.state_path
        if path is None or not (self._dirty or force):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": STATE_VERSION, "alerts": [a.public() for a in self.alerts.values()],
                "groups": self.groups}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
        self._dirty = False

    def _save_rows(self) -> None:
        """Write only the alerts and groups that changed since the last write (one transaction)."""
        now_alerts = {k: a.public() for k, a in self.alerts.items()}
        changed = [d for k, d in now_alerts.items() if self._saved_alerts.get(k) != d]
        removed = [k for k in self._saved_alerts if k not in now_alerts]
        groups = {k: v for k, v in self.groups.items() if self._saved_groups.get(k) != v}
        if changed or removed or groups:
            assert self.state_backend is not None
            self.state_backend.write(changed, removed, groups)
        self._saved_alerts, self._saved_groups = now_alerts, dict(self.groups)
        self._dirty = False

    def _load_state(self) -> None:
        if self.state_backend is not None:
            alerts, groups = self.state_backend.load()
            try:
                self.alerts = {d["key"]: Alert(**d) for d in alerts}
                self.groups = {str(k): float(v) for k, v in groups.items()}
            except (ValueError, TypeError, KeyError) as exc:
                log.error("stored alert state is unreadable (%s); starting empty", exc)
                self.alerts, self.groups = {}, {}
            self._saved_alerts = {k: a.public() for k, a in self.alerts.items()}
            self._saved_groups = dict(self.groups)
            return
        path = self.state_path
        if path is None or not path.exists():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.alerts = {d["key"]: Alert(**d) for d in data.get("alerts", [])}
            self.groups = {str(k): float(v) for k, v in data.get("groups", {}).items()}
        except (ValueError, TypeError, KeyError) as exc:
            log.error("alert state %s is unreadable (%s); starting empty", path, exc)
            self.alerts, self.groups = {}, {}
