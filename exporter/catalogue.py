"""The metric catalogue: every metric gpufleet can emit, as data (``catalogue.csv``).

The exporter may only emit what is listed here; dashboards and alert rules are checked against it.
Columns: ``field`` (the id samples carry), ``name`` (native Prometheus name), ``type`` (gauge, counter,
info), ``unit`` (base unit), ``scope`` (device: labelled with the GPU identity; process; node; fleet),
``family`` (the collector that produces it), ``labels`` (extra labels, space separated), ``dcgm_name``
(the dcgm-exporter name where one exists), ``dcgm_scale`` (factor from base unit to dcgm's unit),
``dcgm_sum_labels`` (labels that dcgm aggregates away), ``nvml_source``, ``vendors``, ``help``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gpufleet.exporter.errors import InputError

CATALOGUE_PATH = Path(__file__).with_name("catalogue.csv")

TYPES = ("gauge", "counter", "info")
SCOPES = ("device", "process", "node", "fleet")

# Labels every device-scope series carries, in native and in dcgm-exporter naming.
NATIVE_IDENTITY_LABELS = ("uuid", "gpu", "node", "model", "pci_bus_id", "vendor")
DCGM_IDENTITY_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname")
MIG_NATIVE_LABELS = ("parent_uuid", "gpu_instance_id", "compute_instance_id", "mig_profile")
MIG_DCGM_LABELS = ("GPU_I_PROFILE", "GPU_I_ID")
# clock_event_active{reason} values AMD GPUs report (the other reasons are NVIDIA's alone)
AMD_CLOCK_EVENT_REASONS = ("sw_power_cap", "sw_thermal_slowdown", "hw_thermal_slowdown", "vr_thermal_slowdown",
                           "hbm_thermal_slowdown")


@dataclass(frozen=True, slots=True)
class Metric:
    field: str
    name: str
    type: str
    unit: str
    scope: str
    family: str
    labels: tuple[str, ...]
    dcgm_name: str | None
    dcgm_scale: float
    dcgm_sum_labels: tuple[str, ...]
    nvml_source: str
    vendors: tuple[str, ...]
    help: str

    @property
    def is_counter(self) -> bool:
        return self.type == "counter"


class Catalogue:
    """Lookup over the catalogue rows by field id, native name and dcgm name."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics
        self._by_field = {m.field: m for m in metrics}
        self._by_name = {m.name: m for m in metrics}
        self._by_dcgm = {m.dcgm_name: m for m in metrics if m.dcgm_name}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def __contains__(self, field: object) -> bool:
        return field in self._by_field

    def field(self, field: str) -> Metric:
        try:
            return self._by_field[field]
        except KeyError:
            raise KeyError(f"field {field!r} is not in the metric catalogue") from None

    def by_name(self, name: str) -> Metric | None:
        """Look a metric up by native or dcgm name."""
        return self._by_name.get(name) or self._by_dcgm.get(name)

    def names(self, mode: str = "native") -> set[str]:
        """Every exposition name in a naming mode (native, dcgm or both)."""
        out: set[str] = set()
        if mode in ("native", "both"):
            out |= set(self._by_name)
        if mode in ("dcgm", "both"):
            out |= set(self._by_dcgm)
        return out

    def family(self, family: str) -> list[Metric]:
        return [m for m in self.metrics if m.family == family]


def _split(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split() if v)


def load_catalogue(path: Path | str = CATALOGUE_PATH) -> Catalogue:
    """Read and validate a catalogue file; errors name the file, line and column."""
    path = Path(path)
    metrics: list[Metric] = []
    seen_fields: set[str] = set()
    seen_names: set[str] = set()
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for lineno, row in enumerate(reader, start=2):
            if None in row or any(v is None for v in row.values()):
                raise InputError("wrong number of columns", path=str(path), line=lineno)
            mtype = row["type"].strip()
            if mtype not in TYPES:
                raise InputError(f"type must be one of {TYPES}, got {mtype!r}", path=str(path),
                                 line=lineno, column="type")
            scope = row["scope"].strip()
            if scope not in SCOPES:
                raise InputError(f"scope must be one of {SCOPES}, got {scope!r}", path=str(path),
                                 line=lineno, column="scope")
            name = row["name"].strip()
            if not name.startswith("gpufleet_"):
                raise InputError("native names start with gpufleet_", path=str(path), line=lineno,
                                 column="name")
            if mtype == "counter" and not name.endswith("_total"):
                raise InputError("counter names end in _total", path=str(path), line=lineno, column="name")
            if mtype == "info" and not name.endswith("_info"):
                raise InputError("info names end in _info", path=str(path), line=lineno, column="name")
            field = row["field"].strip()
            if field in seen_fields or name in seen_names:
                raise InputError(f"duplicate field or name {field!r}/{name!r}", path=str(path), line=lineno)
            seen_fields.add(field)
            seen_names.add(name)
            scale = row["dcgm_scale"].strip()
            metrics.append(Metric(
                field=field, name=name, type=mtype, unit=row["unit"].strip(), scope=scope,
                family=row["family"].strip(), labels=_split(row["labels"]),
                dcgm_name=row["dcgm_name"].strip() or None,
                dcgm_scale=float(scale) if scale else 1.0,
                dcgm_sum_labels=_split(row["dcgm_sum_labels"]),
                nvml_source=row["nvml_source"].strip(), vendors=_split(row["vendors"]),
                help=row["help"].strip(),
            ))
    return Catalogue(metrics)


@cache
def catalogue() -> Catalogue:
    """The packaged catalogue (loaded once)."""
    return load_catalogue()
