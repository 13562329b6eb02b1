"""One collector per NVML family; each produces neutral samples.

Registration is explicit (no import side effects): :func:`registry` maps family name -> class.
"""

from __future__ import annotations

from exporter.collectors.base import Collector


def registry() -> dict[str, type[Collector]]:
    """Every NVML collector family by name, in collection order."""
    from exporter.collectors.clocks import ClocksCollector
    from exporter.collectors.ecc import EccCollector
    from exporter.collectors.gpm import GpmCollector
    from exporter.collectors.health import HealthCollector
    from exporter.collectors.memory import MemoryCollector
    from exporter.collectors.mig import MigCollector
    from exporter.collectors.nvlink import NvlinkCollector
    from exporter.collectors.pcie import PcieCollector
    from exporter.collectors.power import PowerCollector
    from exporter.collectors.processes import ProcessesCollector
    from exporter.collectors.thermal import ThermalCollector
    from exporter.collectors.throttle import ThrottleCollector
    from exporter.collectors.utilization import UtilizationCollector
    from exporter.collectors.virtualization import VirtualizationCollector
    from exporter.collectors.xid import XidCollector

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
