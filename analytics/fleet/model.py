"""The fleet as one cycle of the fleet reader sees it: nodes, GPUs, live state, health.

A GPU's ``health`` is ``ok`` (its node's exporter answers and the GPU reports), ``lost`` (the exporter
answers and says the GPU is lost: ``gpufleet_gpu_up 0``, or, for dcgm-exporter, which has no up series,
the GPU's series vanished while its node still answers) or ``unknown`` (its node's exporter is down or
its data is stale: nobody knows, so it is neither healthy nor lost and nothing is placed there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpufleet.exporter.schema import Device, Labels, Sample, Snapshot

HEALTH = ("ok", "lost", "unknown")


@dataclass(slots=True)
class NodeView:
    """One node: whether its exporter answers, when it last did, and its CPU / memory where the fleet says."""

    name: str
    instance: str = ""
    names: str = "native"
    state: str = "up"
    """``up`` (the exporter answers), ``down`` (``up == 0``: the scrape fails) or ``stale`` (no fresh series)."""
    last_seen: float | None = None
    cpus: float | None = None
    memory_bytes: float | None = None
    capacity_from: str | None = None
    """Where cpus / memory came from: ``node_exporter``, ``exporter`` (its node info series) or None."""
    gpus: list[str] = field(default_factory=list)

    @property
    def answering(self) -> bool:
        return self.state == "up"


@dataclass(slots=True)
class FleetView:
    """Everything one fleet cycle read, in base units."""

    ts: float
    nodes: dict[str, NodeView] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    """uuid -> field -> latest value (fields without labels)."""
    labelled: dict[str, list[tuple[str, Labels, float]]] = field(default_factory=dict)
    """uuid -> [(field, labels, value)] for fields with labels (``xid_errors{xid}``)."""
    health: dict[str, str] = field(default_factory=dict)
    queries: int = 0
    duration_s: float = 0.0
    names: dict[str, str] = field(default_factory=dict)
    """uuid -> the naming its series came in (``native`` wins where both report a GPU)."""

    def silent_nodes(self) -> list[str]:
        return sorted(n for n, v in self.nodes.items() if not v.answering)

    def gpus(self, health: str | None = None) -> list[Device]:
        out = [d for d in self.devices.values() if health is None or self.health.get(d.uuid) == health]
        return sorted(out, key=lambda d: (d.node, d.index, d.uuid))

    def _samples(self, uuids: list[str]) -> list[Sample]:
        ts = self.ts
        out: list[Sample] = []
        for u in uuids:
            if self.health.get(u) == "unknown":
                continue
            for f, v in self.values.get(u, {}).items():
                if f != "up":
                    out.append(Sample(u, f, v, ts))
            for f, labels, v in self.labelled.get(u, ()):
                out.append(Sample(u, f, v, ts, labels))
        return out

    def _up(self, uuids: list[str]) -> dict[str, int]:
        return {u: int(self.health[u] == "ok") for u in uuids if self.health.get(u) in ("ok", "lost")}

    def snapshot(self, node: str = "fleet") -> Snapshot:
        """The whole fleet as one snapshot: every known GPU in ``devices``; samples and ``up`` only for
        GPUs whose node answers (an ``unknown`` GPU has neither: no stale value is passed on)."""
        uuids = [d.uuid for d in self.gpus()]
        return Snapshot(ts=self.ts, node=node, devices=[self.devices[u] for u in uuids],
                        samples=self._samples(uuids), up=self._up(uuids))


def split_by_node(snapshot: Snapshot, answering: dict[str, bool]) -> list[Snapshot]:
    """A fleet snapshot as one snapshot per node (what one exporter per node gives the alert engine),
    each with its node-scope ``node_up`` series (``answering``: node -> its exporter answers), plus one
    snapshot of the fleet-level samples (no uuid) under the fleet snapshot's own node name."""
    node_of = {d.uuid: d.node for d in snapshot.devices}
    per: dict[str, Snapshot] = {n: Snapshot(ts=snapshot.ts, node=n) for n in sorted(answering)}
    fleet = Snapshot(ts=snapshot.ts, node=snapshot.node, stats=list(snapshot.stats))
    for d in snapshot.devices:
        per.setdefault(d.node, Snapshot(ts=snapshot.ts, node=d.node)).devices.append(d)
    for s in snapshot.samples:
        n = node_of.get(s.uuid)
        (per[n] if n is not None else fleet).samples.append(s)
    for uuid, v in snapshot.up.items():
        n = node_of.get(uuid)
        if n is not None:
            per[n].up[uuid] = v
    for e in snapshot.events:
        n = node_of.get(e.uuid) or e.node
        per.get(n, fleet).events.append(e)
    for n, snap in per.items():
        snap.samples.append(Sample("", "node_up", 1.0 if answering.get(n, True) else 0.0, snapshot.ts))
    return [fleet, *per.values()]
