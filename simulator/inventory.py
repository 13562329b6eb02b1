"""The twin's inventory: nodes holding GPUs of real models, with their data-sheet specs.

The spec table below ships inside the package, so the twin works without ``../shared``. Figures are
public data-sheet values (memory, TDP, max clocks, NVLink links) and the thermal thresholds
``nvidia-smi -q`` reports on those boards; idle power is the typical P8/P0-idle draw.

Inventories come from built-in defaults (:func:`default_inventory`) or from a file in either of two
real formats (:func:`load_inventory`):

* Alibaba openb node list (``sn,cpu_milli,memory_mib,gpu,model``), e.g.
  ``../shared/data/alibaba-openb/csv/openb_node_list_gpu_node.csv``;
* Alibaba spot-GPU node list (``gpu_model,gpu_capacity_num,cpu_num,node_name``), e.g.
  ``../shared/data/alibaba-spot-gpu-2026/node_info_df.csv``.

Traces use internal codes for some models (``G2``, ``GPU-series-1``); map them with ``aliases``.
"""

from __future__ import annotations

import csv
import hashlib
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gpufleet.exporter.errors import InputError

MIB = 1024 * 1024
GIB = 1024 * MIB
MHZ = 1_000_000


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """Data-sheet figures of one GPU model (base units: bytes, watts, hertz, celsius)."""

    model: str
    arch: str  # pascal, volta, turing, ampere, ada, hopper
    memory_bytes: int
    tdp_w: float
    idle_w: float
    sm_clock_max_hz: float
    mem_clock_max_hz: float
    slowdown_c: float
    shutdown_c: float
    max_operating_c: float
    nvlink_links: int = 0
    nvlink_link_bytes_s: float = 25e9  # per direction per link
    pcie_gen: int = 4
    pcie_width: int = 16
    hbm: bool = True  # HBM: memory temperature readable
    ecc: bool = True

    @property
    def row_remap(self) -> bool:
        """Ampere and newer remap rows; older boards retire pages."""
        return self.arch in ("ampere", "ada", "hopper")

    @property
    def gpm(self) -> bool:
        """GPM profiling metrics (SM active, tensor active...) exist on Hopper and newer."""
        return self.arch == "hopper"

    @property
    def nvenc(self) -> bool:
        """A100 / A800 / H100 / H800 / H200 have video decoders but no NVENC encoder."""
        return not (self.hbm and self.arch in ("ampere", "hopper"))

    @property
    def pcie_bytes_s(self) -> float:
        per_lane = {3: 0.985e9, 4: 1.969e9, 5: 3.938e9}.get(self.pcie_gen, 1.969e9)
        return per_lane * self.pcie_width


def _s(model: str, arch: str, mem_gib: float, tdp: float, idle: float, sm_mhz: float, mem_mhz: float,
       slow: float, shut: float, maxop: float, links: int = 0, gen: int = 4, hbm: bool = True,
       ecc: bool = True) -> GpuSpec:
    return GpuSpec(model=model, arch=arch, memory_bytes=int(mem_gib * GIB), tdp_w=tdp, idle_w=idle,
                   sm_clock_max_hz=sm_mhz * MHZ, mem_clock_max_hz=mem_mhz * MHZ, slowdown_c=slow,
                   shutdown_c=shut, max_operating_c=maxop, nvlink_links=links, pcie_gen=gen, hbm=hbm,
                   ecc=ecc)


SPECS: dict[str, GpuSpec] = {s.model: s for s in (
    _s("A100-SXM4-40GB", "ampere", 40, 400, 55, 1410, 1215, 89, 92, 85, links=12),
    _s("A100-SXM4-80GB", "ampere", 80, 400, 64, 1410, 1593, 89, 92, 85, links=12),
    _s("A100-PCIE-40GB", "ampere", 40, 250, 35, 1410, 1215, 89, 92, 85),
    _s("A100-PCIE-80GB", "ampere", 80, 300, 45, 1410, 1512, 89, 92, 85),
    _s("A800-SXM4-80GB", "ampere", 80, 400, 60, 1410, 1593, 89, 92, 85, links=8),
    _s("H100-SXM5-80GB", "hopper", 80, 700, 70, 1980, 2619, 89, 92, 87, links=18, gen=5),
    _s("H100-PCIE-80GB", "hopper", 80, 350, 50, 1755, 1593, 89, 92, 87, gen=5),
    _s("H800-SXM5-80GB", "hopper", 80, 700, 70, 1980, 2619, 89, 92, 87, links=8, gen=5),
    _s("H200-SXM-141GB", "hopper", 141, 700, 75, 1980, 3201, 89, 92, 87, links=18, gen=5),
    _s("L40S", "ada", 48, 350, 35, 2520, 9001, 95, 98, 88, hbm=False),
    _s("L4", "ada", 24, 72, 16, 2040, 6251, 95, 98, 88, hbm=False),
    _s("A10", "ampere", 24, 150, 20, 1695, 6251, 95, 98, 88, hbm=False),
    _s("V100-SXM2-16GB", "volta", 16, 300, 40, 1530, 877, 87, 90, 83, links=6, gen=3),
    _s("V100-SXM2-32GB", "volta", 32, 300, 40, 1530, 877, 87, 90, 83, links=6, gen=3),
    _s("T4", "turing", 15, 70, 10, 1590, 5001, 93, 96, 85, gen=3, hbm=False),
    _s("P100-PCIE-16GB", "pascal", 16, 250, 30, 1328, 715, 87, 90, 85, gen=3),
)}

ALIASES: dict[str, str] = {
    "A100": "A100-SXM4-80GB", "A100-80GB": "A100-SXM4-80GB", "A100-40GB": "A100-SXM4-40GB",
    "A800": "A800-SXM4-80GB", "H100": "H100-SXM5-80GB", "H800": "H800-SXM5-80GB",
    "H200": "H200-SXM-141GB", "V100": "V100-SXM2-32GB", "V100M16": "V100-SXM2-16GB",
    "V100M32": "V100-SXM2-32GB", "P100": "P100-PCIE-16GB", "L40S": "L40S", "T4": "T4", "A10": "A10",
}


def register_spec(spec: GpuSpec, *aliases: str) -> None:
    """Add a GPU model to the spec table (and optional alias names for it)."""
    SPECS[spec.model] = spec
    for a in aliases:
        ALIASES[a] = spec.model


def known_models() -> list[str]:
    return sorted(set(SPECS) | set(ALIASES))


def resolve_model(name: str, aliases: dict[str, str] | None = None) -> GpuSpec:
    """The spec of a model name (exact, alias or user alias). Raises KeyError with the known list."""
    key = name.strip()
    if aliases and key in aliases:
        key = aliases[key]
    key = ALIASES.get(key, key)
    if key in SPECS:
        return SPECS[key]
    raise KeyError(
        f"unknown GPU model {name!r}; known models: {', '.join(known_models())}. "
        "Map it to a known one (aliases={'%s': 'A10'}, CLI --alias %s=A10) or add its data sheet with "
        "simulator.inventory.register_spec(GpuSpec(...))" % (name, name))


@dataclass(slots=True)
class GpuSlot:
    """One physical GPU in a node."""

    index: int
    spec: GpuSpec
    uuid: str
    pci_bus_id: str
    serial: str
    age_days: float
    cooling: float  # multiplier on thermal resistance (slot position, airflow)


@dataclass(slots=True)
class Node:
    name: str
    gpus: list[GpuSlot] = field(default_factory=list)
    rack_position: int = 0  # 0 = bottom of the rack (coolest) .. 2 = top


@dataclass(slots=True)
class Inventory:
    nodes: list[Node]

    @property
    def gpus(self) -> list[tuple[Node, GpuSlot]]:
        return [(n, g) for n in self.nodes for g in n.gpus]

    def __len__(self) -> int:
        return sum(len(n.gpus) for n in self.nodes)


# Per-slot cooling: GPUs further along the airflow run warmer. Relative failure hazard by slot from
# ORNL Titan (gc_summary_loc.csv, failures per GPU-year by slot 0..7 over the fleet rate); the same
# ordering is used for the thermal resistance (+-6 %).
SLOT_HAZARD = (1.03, 0.94, 0.91, 0.87, 0.95, 1.01, 1.11, 1.18)
# Relative hazard by vertical position (Titan cage 0, 1, 2: bottom to top of the cabinet).
RACK_HAZARD = (0.66, 1.05, 1.29)


def _cooling(slot: int, rack: int) -> float:
    return 1.0 + 0.35 * (SLOT_HAZARD[slot % 8] - 1.0) + 0.1 * (RACK_HAZARD[rack % 3] - 1.0)


def _stable_uuid(seed: int, node: str, index: int) -> str:
    digest = hashlib.sha256(f"gpufleet-twin/{seed}/{node}/{index}".encode()).digest()[:16]
    return "GPU-" + str(uuidlib.UUID(bytes=digest))


def make_node(name: str, spec: GpuSpec, n_gpus: int, node_index: int, seed: int,
              rng: np.random.Generator, max_age_days: float = 4 * 365.0) -> Node:
    rack = node_index % 3
    node = Node(name=name, rack_position=rack)
    # Nodes are bought as a unit: every GPU of a node has the same age.
    age = float(rng.uniform(0.0, max_age_days))
    for i in range(n_gpus):
        uid = _stable_uuid(seed, name, i)
        node.gpus.append(GpuSlot(
            index=i, spec=spec, uuid=uid, pci_bus_id=f"00000000:{0x18 + 0x10 * i:02X}:00.0",
            serial=str(1320000000000 + int(uid[4:12], 16) % 10_000_000_000), age_days=age,
            cooling=_cooling(i, rack)))
    return node


DEFAULT_MIX = ("A100-SXM4-80GB", "H100-SXM5-80GB", "L40S")


def default_inventory(nodes: int = 4, gpus_per_node: int = 8, seed: int = 0,
                      models: tuple[str, ...] = DEFAULT_MIX) -> Inventory:
    """``nodes`` nodes of ``gpus_per_node`` GPUs, models cycling through ``models`` node by node."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for i in range(nodes):
        spec = resolve_model(models[i % len(models)])
        out.append(make_node(f"twin-node-{i:03d}", spec, gpus_per_node, i, seed, rng))
    return Inventory(out)


OPENB_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
SPOT_COLUMNS = ("gpu_model", "gpu_capacity_num", "cpu_num", "node_name")


def load_inventory(path: str | Path, *, seed: int = 0, aliases: dict[str, str] | None = None,
                   max_nodes: int | None = None) -> Inventory:
    """Read an openb or spot-GPU node list. Nodes without GPUs are skipped.

    Errors name the file, line and column and what was expected.
    """
    path = Path(path)
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read inventory: {exc.strerror}", path=str(path)) from None
    rng = np.random.default_rng([seed, 1])
    nodes: list[Node] = []
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise InputError("empty file; expected a header " + ",".join(OPENB_COLUMNS) + " or "
                             + ",".join(SPOT_COLUMNS), path=str(path), line=1)
        cols = tuple(h.strip() for h in header)
        if set(OPENB_COLUMNS) <= set(cols):
            name_col, count_col, model_col = "sn", "gpu", "model"
        elif set(SPOT_COLUMNS) <= set(cols):
            name_col, count_col, model_col = "node_name", "gpu_capacity_num", "gpu_model"
        else:
            raise InputError("unrecognised header; expected the openb node list columns "
                             f"({','.join(OPENB_COLUMNS)}) or the spot-GPU node list columns "
                             f"({','.join(SPOT_COLUMNS)})", path=str(path), line=1)
        idx = {c: i for i, c in enumerate(cols)}
        seen: set[str] = set()
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(cols):
                raise InputError(f"expected {len(cols)} columns, found {len(row)}", path=str(path),
                                 line=lineno)
            raw = row[idx[count_col]].strip()
            try:
                count = int(raw)
            except ValueError:
                raise InputError(f"expected a whole number of GPUs, got {raw!r}", path=str(path),
                                 line=lineno, column=count_col) from None
            if count < 0 or count > 16:
                raise InputError(f"expected 0 to 16 GPUs per node, got {count}", path=str(path),
                                 line=lineno, column=count_col)
            name = row[idx[name_col]].strip()
            if not name:
                raise InputError("expected a node name", path=str(path), line=lineno, column=name_col)
            if name_col == "node_name":
                name = f"spot-node-{name}"
            if name in seen:
                raise InputError(f"duplicate node {name!r}", path=str(path), line=lineno, column=name_col)
            seen.add(name)
            if count == 0:
                continue
            try:
                spec = resolve_model(row[idx[model_col]], aliases)
            except KeyError as exc:
                raise InputError(str(exc.args[0]), path=str(path), line=lineno, column=model_col) from None
            nodes.append(make_node(name, spec, count, len(nodes), seed, rng))
            if max_nodes is not None and len(nodes) >= max_nodes:
                break
    if not nodes:
        raise InputError("no node with GPUs in the inventory", path=str(path))
    return Inventory(nodes)
