"""One collector per AMD family (amdsmi), named like the NVML families so ``--collectors`` means the
same on both vendors; ``xgmi`` is AMD's own. :func:`amd_registry` maps family name -> class."""

from __future__ import annotations

from gpufleet.exporter.collectors.amd.base import AmdCollector


def amd_registry() -> dict[str, type[AmdCollector]]:
    """Every AMD collector family by name, in collection order."""
    from gpufleet.exporter.collectors.amd.clocks import AmdClocksCollector
    from gpufleet.exporter.collectors.amd.ecc import AmdEccCollector
    from gpufleet.exporter.collectors.amd.health import AmdHealthCollector
    from gpufleet.exporter.collectors.amd.memory import AmdMemoryCollector
    from gpufleet.exporter.collectors.amd.pcie import AmdPcieCollector
    from gpufleet.exporter.collectors.amd.power import AmdPowerCollector
    from gpufleet.exporter.collectors.amd.processes import AmdProcessesCollector
    from gpufleet.exporter.collectors.amd.thermal import AmdThermalCollector
    from gpufleet.exporter.collectors.amd.throttle import AmdThrottleCollector
    from gpufleet.exporter.collectors.amd.utilization import AmdUtilizationCollector
    from gpufleet.exporter.collectors.amd.xgmi import AmdXgmiCollector

    classes: list[type[AmdCollector]] = [
        AmdHealthCollector, AmdClocksCollector, AmdPowerCollector, AmdThermalCollector, AmdMemoryCollector,
        AmdUtilizationCollector, AmdEccCollector, AmdThrottleCollector, AmdPcieCollector, AmdXgmiCollector,
        AmdProcessesCollector,
    ]
    return {c.name: c for c in classes}


__all__ = ["AmdCollector", "amd_registry"]
