"""The neutral data model every part of gpufleet shares: Device, Sample, Event, Snapshot.

Units are base units: bytes, seconds, watts, joules, celsius, hertz, ratios 0-1. A field that a
device does not support is *absent* from a snapshot: never zero, never NaN. ``Sample.field`` is a
catalogue field id (see ``exporter/catalogue.csv``), not a Prometheus name: the sinks render names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

Labels = tuple[tuple[str, str], ...]
"""Extra labels of a sample beyond the device identity, sorted by key (e.g. ``(("link", "3"),)``)."""


@dataclass(frozen=True, slots=True)
class Device:
    """One GPU (or one MIG instance) as a source sees it. ``uuid`` is the stable key."""

    uuid: str
    index: int
    node: str
    model: str
    vendor: str = "nvidia"
    pci_bus_id: str = ""
    memory_total_bytes: int | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    vbios_version: str | None = None
    serial: str | None = None
    # MIG: set on instances; the parent is the physical GPU's uuid.
    mig_parent_uuid: str | None = None
    mig_gi_id: int | None = None
    mig_ci_id: int | None = None
    mig_profile: str | None = None
    # Virtualisation mode: "baremetal", "passthrough", "vgpu_host", "vgpu_guest" (None = unknown).
    virtualization: str | None = None

    @property
    def is_mig(self) -> bool:
        return self.mig_parent_uuid is not None


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one field of one device at one time (unix seconds), in base units."""

    uuid: str
    field: str
    value: float
    ts: float
    labels: Labels = ()


class EventKind(enum.StrEnum):
    XID = "xid"
    ECC_DBE = "ecc_dbe"
    ECC_SBE_BURST = "ecc_sbe_burst"
    ROW_REMAP_FAILURE = "row_remap_failure"
    GPU_LOST = "gpu_lost"
    GPU_RECOVERED = "gpu_recovered"
    CLOCK_EVENT = "clock_event"
    JOB_START = "job_start"
    JOB_END = "job_end"
    JOB_INTERRUPTED = "job_interrupted"
    FAILURE = "failure"
    """A ground-truth failure label (the twin writes these apart from telemetry; never exported)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened at an instant on a device (or a node when ``uuid`` is empty)."""

    ts: float
    kind: EventKind
    uuid: str
    node: str = ""
    code: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CollectorStat:
    """Self-metrics of one collector run: duration, success, and an error text when it failed."""

    collector: str
    duration_s: float
    success: bool
    ts: float
    error: str | None = None


@dataclass(slots=True)
class Snapshot:
    """Everything one collection cycle of one node produced."""

    ts: float
    node: str
    devices: list[Device] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    stats: list[CollectorStat] = field(default_factory=list)
    # uuid -> 1 (up) / 0 (lost). Every device of the inventory appears here, lost ones included.
    up: dict[str, int] = field(default_factory=dict)

    def by_device(self) -> dict[str, list[Sample]]:
        out: dict[str, list[Sample]] = {}
        for s in self.samples:
            out.setdefault(s.uuid, []).append(s)
        return out

    def value(self, uuid: str, field_id: str, labels: Labels = ()) -> float | None:
        """The value of one field of one device, or None when absent (unsupported / not collected)."""
        for s in self.samples:
            if s.uuid == uuid and s.field == field_id and s.labels == labels:
                return s.value
        return None
