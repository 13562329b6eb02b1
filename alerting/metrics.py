"""``gpufleet_alerts_firing{alertname,severity}`` for a prometheus-client registry (the serve process's)."""

from __future__ import annotations

from collections.abc import Iterator

from gpufleet.alerting.engine import AlertEngine
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class EngineCollector(Collector):
    """Register with ``registry.register(EngineCollector(engine))``; values are read at scrape time."""

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily("gpufleet_alerts_firing", "Alerts currently firing", labels=["alertname", "severity"])
        for (name, severity), count in sorted(self.engine.firing_counts().items()):
            fam.add_metric([name, severity], count)
        yield fam
