"""The one translation between gpufleet's native series and dcgm-exporter's, built from the catalogue.

A :class:`Naming` says, for one naming mode, which series carries a catalogue field, its unit factor
(dcgm-exporter reports MiB, percent, milliseconds... where gpufleet uses base units) and which labels
carry the GPU identity. Everything in fleet mode that reads series by name goes through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from gpufleet.exporter.catalogue import Metric, catalogue
from gpufleet.exporter.errors import ConfigError

MODES = ("native", "dcgm")
FLEET_NAMES = ("native", "dcgm", "auto")


@dataclass(frozen=True)
class Naming:
    """Series names, scales and identity labels of one naming mode (``native`` or ``dcgm``)."""

    mode: str
    uuid: str
    node: str
    index: str
    model: str
    pci_bus_id: str
    mig_parent: str | None
    mig_profile: str
    mig_gi: str
    _by_series: dict[str, Metric] = field(default_factory=dict, repr=False, compare=False)

    def series(self, field_id: str) -> str | None:
        """The series name of a catalogue field in this naming, or None where this naming lacks it."""
        m = catalogue().field(field_id)
        return m.name if self.mode == "native" else m.dcgm_name

    def scale(self, m: Metric) -> float:
        """Factor from gpufleet's base unit to this naming's unit (divide a read value by it)."""
        return 1.0 if self.mode == "native" else m.dcgm_scale

    def metric(self, series: str) -> Metric | None:
        """The catalogue metric a series name of this naming carries."""
        return self._by_series.get(series)

    def names_regex(self, fields: tuple[str, ...]) -> str:
        """``a|b|c``: the series of ``fields`` that this naming has (for a ``__name__=~`` matcher)."""
        names = sorted({n for f in fields if (n := self.series(f)) is not None})
        return "|".join(names)


@cache
def naming(mode: str) -> Naming:
    if mode not in MODES:
        raise ConfigError(f"fleet names must be one of {', '.join(FLEET_NAMES)}, got {mode!r}")
    cat = catalogue()
    if mode == "native":
        by = {m.name: m for m in cat.metrics}
        return Naming("native", "uuid", "node", "gpu", "model", "pci_bus_id", "parent_uuid", "mig_profile",
                      "gpu_instance_id", by)
    by = {m.dcgm_name: m for m in cat.metrics if m.dcgm_name}
    # dcgm-exporter labels a MIG instance with its parent's UUID and index plus GPU_I_ID / GPU_I_PROFILE
    return Naming("dcgm", "UUID", "Hostname", "gpu", "modelName", "pci_bus_id", None, "GPU_I_PROFILE", "GPU_I_ID",
                  by)
