"""Source selection: ``--source auto|nvml|amd`` -> an opened Source.

``auto`` (the default) tries NVML and AMD SMI on this node and keeps every source that finds at least
one GPU: one source alone, or a :class:`~exporter.sources.multi.MultiSource` when the node has both.
With neither, one ``SourceUnavailable`` line says why for each vendor and points at ``--source twin``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpufleet.exporter.errors import ConfigError, SourceUnavailable
from gpufleet.exporter.sources.base import Source

log = logging.getLogger(__name__)

NONE_FOUND = "no NVIDIA or AMD GPU found on this node ({why}); use --source twin to run on the simulated fleet"


def nvml_source(collectors: list[str] | None, node: str | None, proc_root: Path, nvml: Any = None) -> Source:
    from gpufleet.exporter.sources.nvml import NvmlSource

    return NvmlSource(collectors=collectors, node=node, proc_root=proc_root, nvml=nvml)


def amd_source(collectors: list[str] | None, node: str | None, proc_root: Path, amdsmi: Any = None,
               pcie_throughput: bool = False) -> Source:
    from gpufleet.exporter.sources.amd import AmdSource

    return AmdSource(collectors=collectors, node=node, proc_root=proc_root, amdsmi=amdsmi,
                     pcie_throughput=pcie_throughput)


def open_source(kind: str, *, collectors: list[str] | None = None, node: str | None = None,
                proc_root: Path = Path("/proc"), nvml: Any = None, amdsmi: Any = None,
                amd_pcie_throughput: bool = False) -> Source:
    """Build and open the device source for ``kind`` (auto, nvml or amd). Raises SourceUnavailable.

    ``nvml`` / ``amdsmi``: library modules to use instead of importing the real ones (tests).
    ``amd_pcie_throughput``: also read AMD PCIe throughput (amdsmi samples about a second per GPU).
    """
    builders: dict[str, Callable[[], Source]] = {
        "nvml": lambda: nvml_source(collectors, node, proc_root, nvml),
        "amd": lambda: amd_source(collectors, node, proc_root, amdsmi, amd_pcie_throughput),
    }
    if kind in builders:
        src = builders[kind]()
        src.open()
        return src
    if kind != "auto":
        raise ConfigError(f"source must be auto, nvml, amd or twin, got {kind!r}")
    found: list[Source] = []
    why: list[str] = []
    for vendor, build in builders.items():
        src = build()
        try:
            src.open()
        except SourceUnavailable as exc:
            why.append(f"{vendor}: {_first_clause(str(exc))}")
            continue
        if src.devices():
            log.info("source auto: %s found %d GPU(s)", vendor, len(src.devices()))
            found.append(src)
        else:
            why.append(f"{vendor}: no GPUs")
            src.close()
    if not found:
        raise SourceUnavailable(NONE_FOUND.format(why="; ".join(why)))
    if len(found) == 1:
        return found[0]
    from gpufleet.exporter.sources.multi import MultiSource

    return MultiSource(found, node=node)


def _first_clause(message: str) -> str:
    """The reason part of a source's one-line error (before its own advice)."""
    return message.split("; use --source", 1)[0].split("; install ", 1)[0]
