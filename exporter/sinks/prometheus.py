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
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gpufleet.exporter.catalogue import Catalogue, catalogue
from gpufleet.exporter.errors import ConfigError
from gpufleet.exporter.schema import Device, Snapshot
from gpufleet.exporter.sinks.base import Sink
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from gpufleet.exporter.loop import CollectionLoop, View

log = logging.getLogger(__name__)

NAMING_MODES = ("native", "dcgm", "both")
GZIP_LEVEL = 1
"""zlib level of gzip-encoded scrapes: the exposition repeats its identity labels, so level 1 already
shrinks it ~30x, at about a third of the CPU of the default level."""
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
    driver = d.driver_version or p.driver_version
    if driver:  # dcgm-exporter's default counters put the driver version on every series as a label
        out.append(("DCGM_FI_DRIVER_VERSION", driver))
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


class SnapshotRenderer:
    """Renders a snapshot to exactly the text of ``render_text(build_families(snapshot, names))``, fast.

    Each series (device, field, labels) gets its line prefix (``name{identity,labels} ``) built once and
    kept while the inventory is unchanged, so a cycle costs one dictionary look-up, one float formatting
    and one string concatenation per series and target name. Values are never cached.
    """

    def __init__(self, names: str, cat: Catalogue) -> None:
        self.native = names in ("native", "both")
        self.dcgm = names in ("dcgm", "both")
        self.cat = cat
        self._slots: dict[str, int] = {}
        self._heads: list[bytes] = []
        self._names: list[str] = []
        # field -> ((slot, scale, summed labels or None, dcgm identity?), ...) in emission order (native first)
        self._routes: dict[str, tuple[tuple[int, float, frozenset[str] | None, bool], ...]] = {}
        for m in cat.metrics:
            if m.scope not in ("device", "process"):
                continue
            route: list[tuple[int, float, frozenset[str] | None, bool]] = []
            if self.native:
                route.append((self._slot(m.name, "gauge" if m.type == "info" else m.type, m.help), 1.0, None, False))
            if self.dcgm and m.dcgm_name:
                slot = self._slot(m.dcgm_name, m.type, _dcgm_help(m.help, m.unit, m.dcgm_scale))
                summed = frozenset(m.dcgm_sum_labels) if m.dcgm_sum_labels else None
                route.append((slot, m.dcgm_scale, summed, True))
            self._routes[m.field] = tuple(route)
        if self.native:
            up, info = cat.field("up"), cat.field("info")
            self._up = self._slot(up.name, up.type, up.help)
            self._info = self._slot(info.name, "gauge", info.help)
        self._devices: list[Device] | None = None
        self._node = ""
        self._nid: dict[str, str] = {}
        self._did: dict[str, str] = {}
        self._series: dict[tuple[str, str, LabelPairs], tuple[tuple[int, bytes, float, bool], ...]] = {}
        self._texts: dict[float, bytes] = {}
        # the previous render's series by position: uuids, fields, labels, targets
        self._prev: tuple[list[str], list[str], list[LabelPairs], list[tuple[tuple[int, bytes, float, bool], ...]]] = (
            [], [], [], [])

    def _slot(self, name: str, mtype: str, help_: str) -> int:
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = len(self._heads)
            self._names.append(name)
            h = help_.replace("\\", "\\\\").replace("\n", "\\n")
            self._heads.append(f"# HELP {name} {h}\n# TYPE {name} {mtype}\n".encode())
        return slot

    def _inventory(self, snapshot: Snapshot) -> None:
        if snapshot.devices == self._devices and snapshot.node == self._node:
            return
        devices = {d.uuid: d for d in snapshot.devices}
        self._nid = {d.uuid: _pairs(_native_identity(d)) for d in snapshot.devices}
        self._did = {d.uuid: _pairs(_dcgm_identity(d, devices.get(d.mig_parent_uuid or "")))
                     for d in snapshot.devices}
        self._devices, self._node = list(snapshot.devices), snapshot.node
        self._series = {}
        self._prev = ([], [], [], [])

    def _ident(self, uuid: str, dcgm: bool) -> str:
        got = (self._did if dcgm else self._nid).get(uuid)
        return _pairs(_unknown_identity(uuid, self._node, dcgm)) if got is None else got

    def _targets(self, uuid: str, field_id: str, labels: LabelPairs) -> tuple[tuple[int, bytes, float, bool], ...]:
        out = []
        for slot, scale, summed, dcgm in self._routes[field_id]:
            extra = labels if summed is None else tuple(kv for kv in labels if kv[0] not in summed)
            prefix = _prefix(self._names[slot], self._ident(uuid, dcgm), extra).encode()
            out.append((slot, prefix, scale, summed is not None))
        got = tuple(out)
        if len(self._series) > 1_000_000:  # bounded: per-process series come and go
            self._series.clear()
        self._series[(uuid, field_id, labels)] = got
        return got

    def render(self, snapshot: Snapshot, stale: frozenset[str] = frozenset()) -> bytes:
        self._inventory(snapshot)
        # per family: alternating line prefix and value text, all bytes, joined once at the end
        lines: list[list[bytes]] = [[] for _ in self._heads]
        order: list[int] = []
        touched = bytearray(len(self._heads))
        sums: dict[int, dict[tuple[str, bytes], float]] = {}
        info_uuids: set[str] = set()
        if self.native:
            order += [self._up, self._info]
            touched[self._up] = touched[self._info] = 1
            up_lines = lines[self._up]
            for uuid, value in snapshot.up.items():
                if uuid not in stale:
                    up_lines += [_prefix(self._names[self._up], self._ident(uuid, False), ()).encode(),
                                 _value(float(value))]
        series = self._series
        up_map = snapshot.up
        texts = self._texts
        if len(texts) > 100_000:
            texts.clear()
        # A source emits its series in the same order every cycle: the series at position i last time is
        # recognised by identity (the same uuid, field and labels objects) without hashing a key.
        prev_u, prev_f, prev_l, prev_t = self._prev
        known = len(prev_u)
        routes = self._routes
        for i, s in enumerate(snapshot.samples):
            uuid = s.uuid
            field_id = s.field
            labels = s.labels
            if i < known and prev_u[i] is uuid and prev_f[i] is field_id and prev_l[i] is labels:
                targets = prev_t[i]
            else:
                found = series.get((uuid, field_id, labels))
                if found is None:
                    found = self._targets(uuid, field_id, labels) if field_id in routes else ()
                targets = found
                if i < known:
                    prev_u[i], prev_f[i], prev_l[i], prev_t[i] = uuid, field_id, labels, targets
                else:
                    prev_u.append(uuid)
                    prev_f.append(field_id)
                    prev_l.append(labels)
                    prev_t.append(targets)
            if field_id == "up" and uuid in up_map:
                continue
            if field_id == "info":
                info_uuids.add(uuid)
            if stale and uuid in stale:  # left out, but its families keep their place in the text
                for slot, *_ in targets:
                    if not touched[slot]:
                        touched[slot] = 1
                        order.append(slot)
                continue
            for slot, prefix, scale, summed in targets:
                if not touched[slot]:
                    touched[slot] = 1
                    order.append(slot)
                v = s.value * scale if scale != 1.0 else s.value
                if summed:
                    acc = sums.setdefault(slot, {})
                    key = (uuid, prefix)
                    acc[key] = acc.get(key, 0.0) + v
                    continue
                # the text of a value, remembered by value (not by series: nothing is served stale);
                # zeros are formatted each time, as 0.0 and -0.0 are equal keys with different texts
                text = texts.get(v) if v and type(v) is float else None
                if text is None:
                    text = _value(v)
                    if v and type(v) is float:
                        texts[v] = text
                got = lines[slot]
                got.append(prefix)
                got.append(text)
        n = len(snapshot.samples)
        for kept in self._prev:
            del kept[n:]
        for slot, acc in sums.items():
            for (_u, prefix), v in acc.items():
                lines[slot] += [prefix, _value(v)]
        if self.native:
            name = self._names[self._info]
            synth: list[bytes] = []
            for d in snapshot.devices:
                if d.uuid in info_uuids or d.uuid in stale:
                    continue
                extra = tuple((k, v) for k, v in (
                    ("driver_version", d.driver_version), ("cuda_version", d.cuda_version),
                    ("vbios_version", d.vbios_version), ("serial", d.serial), ("virtualization", d.virtualization),
                ) if v is not None)
                synth += [_prefix(name, self._nid[d.uuid], extra).encode(), b"1\n"]
            lines[self._info][:0] = synth
        parts: list[bytes] = []
        for slot in order:
            got = lines[slot]
            if got:
                parts.append(self._heads[slot])
                parts += got
        return b"".join(parts)


def _value(v: float) -> bytes:
    """A sample's value and its line end, as the exposition writes it (see :func:`_fmt`)."""
    return (_fmt(v) + "\n").encode()


def _prefix(name: str, ident: str, extra: LabelPairs) -> str:
    """``name{identity,labels} `` (the text before a sample's value)."""
    if extra:
        return f"{name}{{{ident}{',' if ident else ''}{_pairs(extra)}}} "
    if ident:
        return f"{name}{{{ident}}} "
    return f"{name} "


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
        self._renderer = SnapshotRenderer(names, self.cat)
        self._render_lock = threading.Lock()  # the renderer's caches: collection thread vs a stale re-render
        # (snapshot, (id(snapshot), stale set), body): one immutable tuple, swapped by one assignment, so a
        # scrape reads it without a lock and never waits for the collection thread
        self._state: tuple[Snapshot | None, tuple[int, frozenset[str]] | None, bytes] = (None, None, b"")
        self._families: tuple[int, list[Family]] = (0, [])
        # gzip: (the body it encodes, that body deflated and sync-flushed, the compressor to finish per scrape)
        self._gz: tuple[bytes, bytes, Any] | None = None
        self._gz_lock = threading.Lock()
        self.gzip_wanted = False
        """A scraper asked for gzip: from then on each new body is also compressed in the collection thread."""
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(self))
        if loop is not None:
            loop.add_sink(self)
            snap = loop.latest()
            if snap is not None:
                self.write(snap)

    def write(self, snapshot: Snapshot) -> None:
        with self._render_lock:
            body = self._renderer.render(snapshot)
            self._state = (snapshot, (id(snapshot), frozenset()), body)
        if self.gzip_wanted:
            self._compressed(body)  # here, so a gzip scrape finds it ready

    def families(self) -> list[Family]:
        """The latest snapshot as families (for the prometheus-client registry; built on request)."""
        snap = self._state[0]
        if snap is None:
            return []
        key, fams = self._families
        if key != id(snap):
            fams = build_families(snap, self.names, self.cat)
            self._families = (id(snap), fams)
        return fams

    def render_chunks(self, now: float | None = None) -> list[bytes]:
        """The exposition for a scrape at ``now`` as chunks (the big one is rendered once per snapshot):
        stale devices left out, self-metrics current."""
        if self.loop is None:
            return [self._state[2]]
        view = self.loop.view(now)
        if view.snapshot is not None and self._state[0] is None:
            self.write(view.snapshot)  # the loop collected before this sink was attached
        # A newer snapshot than the rendered one is being rendered by the collection thread right now;
        # until it is done the previous body is served (its devices were current one cycle ago).
        snap, key, body = self._state
        if snap is not None and key != (id(snap), view.stale):
            with self._render_lock:
                body = self._renderer.render(snap, view.stale)
                if self._state[0] is snap:
                    self._state = (snap, (id(snap), view.stale), body)
        return [body, render_text(self_families(view, self.cat)).encode()]

    def _compressed(self, body: bytes) -> tuple[bytes, bytes, Any]:
        got = self._gz
        if got is None or got[0] is not body:
            with self._gz_lock:
                got = self._gz
                if got is None or got[0] is not body:
                    c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header and trailer
                    got = (body, c.compress(body) + c.flush(zlib.Z_SYNC_FLUSH), c)
                    self._gz = got
        return got

    def render_gzip_chunks(self, now: float | None = None) -> list[bytes]:
        """:meth:`render_chunks` as one gzip stream: the big body is compressed once per snapshot, each
        scrape finishes a copy of that compressor with its current self-metrics."""
        self.gzip_wanted = True
        chunks = self.render_chunks(now)
        _body, head, c = self._compressed(chunks[0])
        tail = c.copy()
        return [head, tail.compress(b"".join(chunks[1:])) + tail.flush()]

    def render(self, now: float | None = None) -> bytes:
        """The exposition for a scrape at ``now`` as one bytes object."""
        return b"".join(self.render_chunks(now))
