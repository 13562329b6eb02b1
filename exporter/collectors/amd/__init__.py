"""One collector per AMD family (amdsmi), named like the NVML families so ``--collectors`` means the
same on both vendors; ``xgmi`` is AMD's own. :func:`amd_registry` maps family name -> class."""

from __future__ import annotations

from exporter.collectors.amd.base import AmdCollector


def amd_registry() -> dict[str, type[AmdCollector]]:
    """Every AMD collector family by name, in collection order."""
    from exporter.collectors.amd.clocks import AmdClocksCollector
    from exporter.collectors.amd.ecc import AmdEccCollector
    from exporter.collectors.amd.health import AmdHealthCollector
    from exporter.collectors.amd.memory import AmdMemoryCollector
    from exporter.collectors.amd.pcie import AmdPcieCollector
    from exporter.collectors.amd.power import AmdPowerCollector
    from exporter.collectors.amd.processes import AmdProcessesCollector
    from exporter.collectors.amd.thermal import AmdThermalCollector
    from exporter.collectors.amd.throttle import AmdThrottleCollector
    from exporter.collectors.amd.utilization import AmdUtilizationCollector
    from exporter.collectors.amd.xgmi import AmdXgmiCollector

    classes: list[type[AmdCollector]] = [
        AmdHealthCollector, AmdClocksCollector, AmdPowerCollector, AmdThermalCollector, AmdMemoryCollector,
        AmdUtilizationCollector, AmdEccCollector, AmdThrottleCollector, AmdPcieCollector, AmdXgmiCollector,
        AmdProcessesCollector,
    ]
    return {c.name: c for c in classes}


__all__ = ["AmdCollector", "amd_registry"]
