"""Run a real exporter (collection loop + /metrics HTTP server) in-process for tests.

    with run_exporter(source, names="native", interval=1.0) as exp:
        httpx.get(exp.url)            # http://127.0.0.1:PORT/metrics
        prometheus = Prometheus(tmp, [exp.host_port])
        exp.loop.view()               # what a scrape would serve

The harness opens the source (unless ``open_source=False``), waits for the first collection cycle,
and on exit stops the server and the loop (which closes its sinks) and closes the source.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from gpufleet.exporter.loop import CollectionLoop
from gpufleet.exporter.sinks.base import Sink
from gpufleet.exporter.sinks.prometheus import PrometheusSink
from gpufleet.exporter.sinks.web import MetricsServer, WebConfig
from gpufleet.exporter.sources.base import Source


@dataclass
class RunningExporter:
    loop: CollectionLoop
    sink: PrometheusSink
    server: MetricsServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host_port(self) -> str:
        return f"{self.server.host}:{self.server.port}"


@contextmanager
def run_exporter(source: Source, names: str = "native", interval: float = 1.0, *,
                 sinks: Sequence[Sink] = (), web: WebConfig | None = None,
                 collectors: Sequence[str] | None = None, open_source: bool = True) -> Iterator[RunningExporter]:
    """Start loop + HTTP server on a free loopback port; stop both (and close the source) on exit."""
    if open_source:
        source.open()
    loop = CollectionLoop(source, interval=interval, sinks=sinks, collectors=collectors)
    sink = PrometheusSink(loop, names=names)
    server = MetricsServer(sink.render_chunks, "127.0.0.1", 0, web=web)
    try:
        loop.start()
        loop.wait_cycles(1)
        server.start()
        yield RunningExporter(loop, sink, server)
    finally:
        server.stop()
        loop.stop()
        if open_source:
            source.close()
