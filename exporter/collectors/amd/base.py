"""What every AMD collector shares: the device record and the base class (samples go through the
same :class:`~exporter.collectors.base.Emitter` as NVML's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gpufleet.exporter.amdsmi_query import AmdQuery, num
from gpufleet.exporter.collectors.base import Emitter
from gpufleet.exporter.nvml_query import NA
from gpufleet.exporter.schema import Device, Labels


@dataclass(slots=True)
class AmdDevice:
    """A device as the AMD source holds it: the neutral Device plus its amdsmi processor handle."""

    device: Device
    handle: Any
    lost: bool = False

    @property
    def uuid(self) -> str:
        return self.device.uuid


class AmdCollector:
    """One AMD family. Subclasses set ``name`` (the same family names as NVML's collectors)."""

    name: ClassVar[str] = "collector"

    def __init__(self) -> None:
        self.q: AmdQuery | None = None

    @property
    def query(self) -> AmdQuery:
        assert self.q is not None, "collector used before start()"
        return self.q

    @property
    def amdsmi(self) -> Any:
        return self.query.amdsmi

    def start(self, query: AmdQuery, devices: list[AmdDevice]) -> None:
        self.q = query

    def stop(self) -> None:
        """Nothing to release by default."""

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        """Read this family's fields of one device. May raise GpuLost."""

    def collect_node(self, devices: list[AmdDevice], out: Emitter) -> None:
        """Once per cycle after the devices."""

    # helpers ---------------------------------------------------------------------------------
    def get(self, dev: AmdDevice, field_id: str, fn: str, *args: Any) -> Any:
        """``query.call`` on this device's handle (the handle is the first argument)."""
        return self.query.call(dev.uuid, field_id, fn, dev.handle, *args)

    def enum(self, cls: str, member: str) -> Any:
        """``amdsmi.<cls>.<member>`` or None when this amdsmi version lacks it."""
        return getattr(getattr(self.amdsmi, cls, None), member, None)

    @staticmethod
    def put(out: Emitter, dev: AmdDevice, field_id: str, value: Any, scale: float = 1.0,
            labels: dict[str, str] | Labels | None = None) -> None:
        """Emit a numeric answer unless it is NA / "N/A" (absent, never zero)."""
        v = None if value is NA else num(value)
        if v is not None:
            out.sample(dev.uuid, field_id, v, labels, scale)


def entry(d: Any, *keys: str) -> Any:
    """``d[k1][k2]...`` of an amdsmi answer dict, or None when a level is missing / NA."""
    for k in keys:
        if d is NA or not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d
