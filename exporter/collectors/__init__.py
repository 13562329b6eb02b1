"""One collector per NVML family; each produces neutral samples.

Registration is explicit (no import side effects): :func:`registry` maps family name -> class.
"""

from __future__ import annotations

from gpufleet.exporter.collectors.base import Collector


def registry() -> dict[str, type[Collector]]:
    """Every NVML collector family by name, in collection order."""
    from gpufleet.exporter.collectors.clocks import ClocksCollector
    from gpufleet.exporter.collectors.ecc import EccCollector
    from gpufleet.exporter.collectors.gpm import GpmCollector
    from gpufleet.exporter.collectors.health import HealthCollector
    from gpufleet.exporter.collectors.memory import MemoryCollector
    from gpufleet.exporter.collectors.mig import MigCollector
    from gpufleet.exporter.collectors.nvlink import NvlinkCollector
    from gpufleet.exporter.collectors.pcie import PcieCollector
    from gpufleet.exporter.collectors.power import PowerCollector
    from gpufleet.exporter.collectors.processes import ProcessesCollector
    from gpufleet.exporter.collectors.thermal import ThermalCollector
    from gpufleet.exporter.collectors.throttle import ThrottleCollector
    from gpufleet.exporter.collectors.utilization import UtilizationCollector
    from gpufleet.exporter.collectors.virtualization import VirtualizationCollector
    from gpufleet.exporter.collectors.xid import XidCollector

    classes: list[type[Collector]] = [
        HealthCollector, ClocksCollector, PowerCollector, ThermalCollector, MemoryCollector,
        UtilizationCollector, EccCollector, ThrottleCollector, PcieCollector, NvlinkCollector,
        XidCollector, ProcessesCollector, MigCollector, GpmCollector, VirtualizationCollector,
    ]
    return {c.name: c for c in classes}


def families() -> list[str]:
    """The collector family names, in collection order."""
    return list(registry())


__all__ = ["Collector", "families", "registry"]
