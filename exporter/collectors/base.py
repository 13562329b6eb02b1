"""What every NVML collector shares: the device handle record, the sample emitter, the base class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from gpufleet.exporter.nvml_query import NA, NvmlQuery
from gpufleet.exporter.schema import Device, Event, Labels, Sample


@dataclass(slots=True)
class NvmlDevice:
    """A device as the NVML source holds it: the neutral Device plus its NVML handle."""

    device: Device
    handle: Any
    parent: NvmlDevice | None = None
    lost: bool = False
    mig_enabled: bool = False
    """A physical GPU in MIG mode: per-instance data (processes, memory) comes from its MIG devices."""
    uuid: str = field(init=False)
    """``device.uuid`` (a plain attribute: the collectors read it for every sample)."""

    def __post_init__(self) -> None:
        self.uuid = self.device.uuid

    @property
    def is_mig(self) -> bool:
        return self.parent is not None


_new = object.__new__
_SET = tuple(getattr(Sample, name).__set__ for name in ("uuid", "field", "value", "ts", "labels"))


def make_sample(uuid: str, field_id: str, value: float, ts: float, labels: Labels) -> Sample:
    """``Sample(uuid, field_id, value, ts, labels)`` without the frozen dataclass's per-field
    ``object.__setattr__`` round trips (the same object; a cycle makes ~200 per GPU)."""
    s = _new(Sample)
    set_uuid, set_field, set_value, set_ts, set_labels = _SET
    set_uuid(s, uuid)
    set_field(s, field_id)
    set_value(s, value)
    set_ts(s, ts)
    set_labels(s, labels)
    return s


@dataclass(slots=True)
class Emitter:
    """Collects one cycle's samples and events (timestamped ``now``)."""

    now: float
    node: str
    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def sample(self, uuid: str, field_id: str, value: Any, labels: dict[str, str] | Labels | None = None,
               scale: float = 1.0) -> None:
        """Add a sample unless ``value`` is NA / None (absent, never zero).

        ``labels``: a dict, or an already sorted Labels tuple (hot paths precompute those).
        """
        if value is NA or value is None:
            return
        if labels is None:
            lab: Labels = ()
        elif isinstance(labels, dict):
            lab = tuple(sorted(labels.items()))
        else:
            lab = labels
        self.samples.append(make_sample(uuid, field_id, float(value) * scale, self.now, lab))

    @staticmethod
    def labels(labels: dict[str, str] | Labels) -> Labels:
        return tuple(sorted(labels.items())) if isinstance(labels, dict) else labels

    def event(self, event: Event) -> None:
        self.events.append(event)


class Collector:
    """One NVML family. Subclasses set ``name`` and implement :meth:`collect_device`.

    ``mig``: also run on MIG instances (memory, processes, GPM); otherwise physical GPUs only.
    """

    name: ClassVar[str] = "collector"
    mig: ClassVar[bool] = False

    def __init__(self) -> None:
        self.q: NvmlQuery | None = None

    @property
    def query(self) -> NvmlQuery:
        assert self.q is not None, "collector used before start()"
        return self.q

    @property
    def nvml(self) -> Any:
        return self.query.nvml

    def start(self, query: NvmlQuery, devices: list[NvmlDevice]) -> None:
        """Called once by the source's open(); background work starts here."""
        self.q = query

    def stop(self) -> None:
        """Called by the source's close(); must be safe to call twice."""

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        """Read this family's fields of one device. May raise GpuLost."""

    def collect_node(self, devices: list[NvmlDevice], out: Emitter) -> None:
        """Once per cycle after the devices (events drained from a thread...)."""

    def error(self) -> str | None:
        """A collector-level failure to report in its CollectorStat (e.g. a dead thread)."""
        return None

    # helpers ---------------------------------------------------------------------------------
    def get(self, dev: NvmlDevice, field_id: str, fn: str, *args: Any, **kwargs: Any) -> Any:
        """``query.call`` on this device's handle (the handle is the first argument)."""
        q = self.q
        assert q is not None, "collector used before start()"
        if kwargs:
            return q.call(dev.uuid, field_id, fn, dev.handle, *args, **kwargs)
        return q.read(dev.uuid, field_id, fn, dev.handle, *args)

    def emit(self, dev: NvmlDevice, out: Emitter, field_id: str, fn: str, *args: Any,
             scale: float = 1.0, labels: dict[str, str] | Labels | None = None) -> Any:
        """Read one scalar field and emit it; returns the raw value (or NA)."""
        q = self.q
        assert q is not None, "collector used before start()"
        value = q.read(dev.uuid, field_id, fn, dev.handle, *args)
        if value is not NA and value is not None:
            out.samples.append(make_sample(dev.uuid, field_id, float(value) * scale, out.now,
                                           () if labels is None else out.labels(labels)))
        return value

    def emit_all(self, dev: NvmlDevice, out: Emitter, plan: tuple[tuple[str, str, tuple[Any, ...], float], ...]) -> None:
        """Read and emit scalar fields ``(field_id, fn, extra args, scale)`` (no labels), in order."""
        q = self.q
        assert q is not None, "collector used before start()"
        read, uuid, handle, now, append = q.read, dev.uuid, dev.handle, out.now, out.samples.append
        for field_id, fn, args, scale in plan:
            value = read(uuid, field_id, fn, handle, *args)
            if value is not NA and value is not None:
                append(make_sample(uuid, field_id, float(value) * scale, now, ()))
