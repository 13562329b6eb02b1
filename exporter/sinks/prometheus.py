"""The Prometheus sink: renders the loop's latest snapshot as a Prometheus exposition.

Naming modes (``names``):

- ``native``: catalogue names (``gpufleet_…``, base units, ``_total`` on counters) with the labels
  ``uuid gpu node model pci_bus_id vendor`` (+ ``parent_uuid gpu_instance_id compute_instance_id
  mig_profile`` on MIG instances) and each metric's own labels.
- ``dcgm``: dcgm-exporter's names, units (the catalogue's ``dcgm_scale``) and labels (``gpu UUID
  pci_bus_id device modelName Hostname`` + ``GPU_I_PROFILE GPU_I_ID`` on MIG instances); labels listed in
  ``dcgm_sum_labels`` are summed away. Metrics dcgm-exporter lacks are left out, except the exporter's
  self-metrics, so "failed" and "no data" stay distinguishable.
- ``both``: the two together.

Only catalogue metrics are emitted. The text is rendered once per snapshot in the collection thread
(:meth:`PrometheusSink.write`), so a scrape only adds the few self-metrics. :attr:`PrometheusSink.registry`
is a prometheus-client registry of its own (no import-time globals) holding :class:`SnapshotCollector`,
for processes that merge registries. The HTTP server lives in :mod:`exporter.sinks.web`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.catalogue import Catalogue, catalogue
from exporter.errors import ConfigError
from exporter.schema import Device, Snapshot
from exporter.sinks.base import Sink

if TYPE_CHECKING:
    from exporter.loop import CollectionLoop, View

log = logging.getLogger(__name__)

NAMING_MODES = ("native", "dcgm", "both")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LabelPairs = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Family:
    """One metric family ready to render: samples are (device uuid or "", identity labels, own labels, value).

    The identity tuple is shared by every sample of a device, so rendering formats it once."""

    name: str
    type: str
    help: str
    samples: list[tuple[str, LabelPairs, LabelPairs, float]] = field(default_factory=list)


def _esc(v: str) -> str:
    if "\\" in v or '"' in v or "\n" in v:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return v


_SPECIAL = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def _fmt(v: float) -> str:
    """Shortest exact text of a value: 1410000000.0 -> "1410000000", 0.51 -> "0.51", inf -> "+Inf"."""
    r = repr(v)
    if r[-2:] == ".0":
        return r[:-2]
    return _SPECIAL.get(r, r)


def _native_identity(d: Device) -> LabelPairs:
    out: list[tuple[str, str]] = [("uuid", d.uuid), ("gpu", str(d.index)), ("node", d.node), ("model", d.model),
                                  ("pci_bus_id", d.pci_bus_id), ("vendor", d.vendor)]
    if d.is_mig:
        out += [("parent_uuid", d.mig_parent_uuid or ""), ("gpu_instance_id", _opt(d.mig_gi_id)),
                ("compute_instance_id", _opt(d.mig_ci_id)), ("mig_profile", d.mig_profile or "")]
    return tuple(out)


def _dcgm_identity(d: Device, parent: Device | None) -> LabelPairs:
    p = parent or d
    out: list[tuple[str, str]] = [("gpu", str(p.index)), ("UUID", p.uuid), ("pci_bus_id", p.pci_bus_id),
                                  ("device", f"{p.vendor}{p.index}"), ("modelName", p.model), ("Hostname", d.node)]
    if d.is_mig:
        out += [("GPU_I_PROFILE", d.mig_profile or ""), ("GPU_I_ID", _opt(d.mig_gi_id))]
    return tuple(out)


def _opt(v: int | None) -> str:
    return "" if v is None else str(v)


def _unknown_identity(uuid: str, node: str, dcgm: bool) -> LabelPairs:
    if dcgm:
        return (("UUID", uuid), ("Hostname", node))
    return (("uuid", uuid), ("node", node))


def build_families(snapshot: Snapshot, names: str, cat: Catalogue | None = None) -> list[Family]:
    """The device and process families of one snapshot in a naming mode (self-metrics excluded)."""
    cat = cat or catalogue()
    native = names in ("native", "both")
    dcgm = names in ("dcgm", "both")
    devices = {d.uuid: d for d in snapshot.devices}
    nid: dict[str, LabelPairs] = {}
    did: dict[str, LabelPairs] = {}
    for d in snapshot.devices:
        nid[d.uuid] = _native_identity(d)
        did[d.uuid] = _dcgm_identity(d, devices.get(d.mig_parent_uuid or ""))
    fams: dict[str, Family] = {}
    summed: dict[str, dict[tuple[str, LabelPairs, LabelPairs], float]] = {}

    def fam(name: str, mtype: str, help_: str) -> Family:
        f = fams.get(name)
        if f is None:
            f = fams[name] = Family(name, mtype, help_)
        return f

    if native:
        up = cat.field("up")
        f_up = fam(up.name, up.type, up.help)
        for uuid, value in snapshot.up.items():
            f_up.samples.append((uuid, nid.get(uuid) or _unknown_identity(uuid, snapshot.node, False), (),
                                 float(value)))
        info = cat.field("info")
        info_uuids = {s.uuid for s in snapshot.samples if s.field == "info"}
        f_info = fam(info.name, "gauge", info.help)
        for d in snapshot.devices:
            if d.uuid in info_uuids:
                continue
            extra = tuple((k, v) for k, v in (
                ("driver_version", d.driver_version), ("cuda_version", d.cuda_version),
                ("vbios_version", d.vbios_version), ("serial", d.serial), ("virtualization", d.virtualization),
            ) if v is not None)
            f_info.samples.append((d.uuid, nid[d.uuid], extra, 1.0))

    by_field = {m.field: m for m in cat.metrics}
    skipped: set[str] = set()
    for s in snapshot.samples:
        m = by_field.get(s.field)
        if m is None or m.scope not in ("device", "process"):
            skipped.add(s.field)
            continue
        if s.field == "up" and s.uuid in snapshot.up:
            continue
        if native:
            ident = nid.get(s.uuid) or _unknown_identity(s.uuid, snapshot.node, False)
            fam(m.name, "gauge" if m.type == "info" else m.type, m.help).samples.append(
                (s.uuid, ident, s.labels, s.value))
        if dcgm and m.dcgm_name:
            ident = did.get(s.uuid) or _unknown_identity(s.uuid, snapshot.node, True)
            scaled = s.value * m.dcgm_scale
            if m.dcgm_sum_labels:
                extra = tuple(kv for kv in s.labels if kv[0] not in m.dcgm_sum_labels)
                acc = summed.setdefault(m.dcgm_name, {})
                key = (s.uuid, ident, extra)
                acc[key] = acc.get(key, 0.0) + scaled
                fam(m.dcgm_name, m.type, _dcgm_help(m.help, m.unit, m.dcgm_scale))
            else:
                fam(m.dcgm_name, m.type, _dcgm_help(m.help, m.unit, m.dcgm_scale)).samples.append(
                    (s.uuid, ident, s.labels, scaled))
    for name, acc in summed.items():
        fams[name].samples.extend((uuid, ident, extra, v) for (uuid, ident, extra), v in acc.items())
    if skipped:
        log.debug("fields not rendered (not in the catalogue or not device/process scope): %s", sorted(skipped))
    return [f for f in fams.values() if f.samples]


def _dcgm_help(help_: str, unit: str, scale: float) -> str:
    if scale != 1 and unit:
        return f"{help_} (dcgm-exporter unit: {unit} x {scale:g})"
    return help_


def self_families(view: View, cat: Catalogue | None = None) -> list[Family]:
    """The exporter's own metrics at serving time: per-collector duration, success, last success..."""
    cat = cat or catalogue()
    dur, ok, last = cat.field("collector_duration"), cat.field("collector_success"), cat.field("collector_last_success")
    f_dur, f_ok, f_last = Family(dur.name, dur.type, dur.help), Family(ok.name, ok.type, ok.help), \
        Family(last.name, last.type, last.help)
    for c in view.collectors:
        labels = (("collector", c.collector),)
        f_dur.samples.append(("", (), labels, c.duration_s))
        f_ok.samples.append(("", (), labels, 1.0 if c.success else 0.0))
        if c.last_success is not None:
            f_last.samples.append(("", (), labels, c.last_success))
    out = [f_dur, f_ok, f_last]
    if view.age_s is not None:
        age = cat.field("snapshot_age")
        out.append(Family(age.name, age.type, age.help, [("", (), (), max(0.0, view.age_s))]))
    sink_fams: dict[str, Family] = {}
    for field_id, sink_labels, sink_value in view.sink_metrics:
        if field_id not in cat:
            continue
        m = cat.field(field_id)
        sink_fams.setdefault(m.name, Family(m.name, m.type, m.help)).samples.append(("", (), sink_labels, sink_value))
    out += sink_fams.values()
    return [f for f in out if f.samples]


def _pairs(labels: LabelPairs) -> str:
    return ",".join(f'{k}="{_esc(v)}"' for k, v in labels)


def render_text(families: list[Family], stale: frozenset[str] = frozenset()) -> str:
    """Prometheus text exposition (0.0.4) of families, leaving out samples of stale devices."""
    parts: list[str] = []
    ident_cache: dict[int, str] = {}
    extra_cache: dict[LabelPairs, str] = {}
    for f in families:
        lines = []
        name = f.name
        for uuid, ident, extra, value in f.samples:
            if uuid and uuid in stale:
                continue
            i = ident_cache.get(id(ident))
            if i is None:
                i = ident_cache[id(ident)] = _pairs(ident)
            if extra:
                e = extra_cache.get(extra)
                if e is None:
                    e = extra_cache[extra] = ("," if ident else "") + _pairs(extra)
                lines.append(f"{name}{{{i}{e}}} {_fmt(value)}\n")
            elif ident:
                lines.append(f"{name}{{{i}}} {_fmt(value)}\n")
            else:
                lines.append(f"{name} {_fmt(value)}\n")
        if lines:
            help_ = f.help.replace("\\", "\\\\").replace("\n", "\\n")
            parts.append(f"# HELP {name} {help_}\n# TYPE {name} {f.type}\n")
            parts.extend(lines)
    return "".join(parts)


class SnapshotCollector(Collector):
    """A prometheus-client custom collector over a :class:`PrometheusSink` (fresh families each collect)."""

    def __init__(self, sink: PrometheusSink) -> None:
        self.sink = sink

    def collect(self) -> Iterator[Metric]:
        view = self.sink.loop.view() if self.sink.loop is not None else None
        fams = list(self.sink.families())
        if view is not None:
            fams += self_families(view, self.sink.cat)
        stale = view.stale if view is not None else frozenset()
        for f in fams:
            # prometheus-client appends _total to counters itself; dcgm's counters lack it, so they go
            # out untyped here (the HTTP endpoint renders them exactly, as dcgm-exporter does).
            if f.type == "counter" and f.name.endswith("_total"):
                metric = Metric(f.name[: -len("_total")], f.help, "counter")
            elif f.type == "counter":
                metric = Metric(f.name, f.help, "unknown")
            else:
                metric = Metric(f.name, f.help, "gauge")
            for uuid, ident, extra, value in f.samples:
                if uuid and uuid in stale:
                    continue
                metric.add_sample(f.name, dict(ident + extra), value)
            if metric.samples:
                yield metric


class PrometheusSink(Sink):
    """Serves the latest snapshot of a loop in a naming mode; renders once per snapshot.

    Attach it to a loop (``PrometheusSink(loop)`` adds itself as a sink) so it sees every snapshot;
    :meth:`render` (or :meth:`render_chunks`, which the HTTP server uses) gives the exposition for a scrape.
    """

    name = "prometheus"

    def __init__(self, loop: CollectionLoop | None = None, names: str = "native",
                 cat: Catalogue | None = None) -> None:
        if names not in NAMING_MODES:
            raise ConfigError(f"names must be one of {', '.join(NAMING_MODES)}, got {names!r}")
        self.names = names
        self.cat = cat or catalogue()
        self.loop = loop
        # (snapshot, families, (id(snapshot), stale set), body), swapped as one tuple (thread safe)
        self._state: tuple[Snapshot | None, list[Family], tuple[int, frozenset[str]] | None, bytes] = (
            None, [], None, b"")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(self))
        if loop is not None:
            loop.add_sink(self)
            snap = loop.latest()
            if snap is not None:
                self.write(snap)

    def write(self, snapshot: Snapshot) -> None:
        fams = build_families(snapshot, self.names, self.cat)
        self._state = (snapshot, fams, (id(snapshot), frozenset()), render_text(fams).encode())

    def families(self) -> list[Family]:
        return self._state[1]

    def render_chunks(self, now: float | None = None) -> list[bytes]:
        """The exposition for a scrape at ``now`` as chunks (the big one is rendered once per snapshot):
        stale devices left out, self-metrics current."""
        if self.loop is None:
            return [self._state[3]]
        view = self.loop.view(now)
        if view.snapshot is not None and self._state[0] is None:
            self.write(view.snapshot)  # the loop collected before this sink was attached
        # A newer snapshot than the rendered one is being rendered by the collection thread right now;
        # until it is done the previous body is served (its devices were current one cycle ago).
        snap, fams, key, body = self._state
        if key != (id(snap), view.stale):
            body = render_text(fams, view.stale).encode()
            self._state = (snap, fams, (id(snap), view.stale), body)
        return [body, render_text(self_families(view, self.cat)).encode()]

    def render(self, now: float | None = None) -> bytes:
        """The exposition for a scrape at ``now`` as one bytes object."""
        return b"".join(self.render_chunks(now))
