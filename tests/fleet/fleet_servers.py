"""A twin fleet on loopback: one `gpufleet exporter --source twin --twin-node NAME` process per node
(the same seed gives every process the same fleet), scraped every second by a real Prometheus or a
real VictoriaMetrics."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
from gpufleet.simulator.twin import Twin, TwinConfig

from tests.servers import Prometheus, ServerProcess, VictoriaMetrics, free_port, wait_until

NODES, GPUS, SEED = 3, 2, 11
FAULT_NODE, FAULT_GPU, FAULT_AFTER_S = 1, 1, 10.0


def twin_devices() -> dict[str, tuple[str, int]]:
    """uuid -> (node, index) of the twin fleet every exporter process builds."""
    twin = Twin(TwinConfig(nodes=NODES, gpus_per_node=GPUS, seed=SEED))
    return {d.uuid: (d.node, d.index) for d in twin.devices()}


class TwinExporters:
    """One exporter process per twin node; node FAULT_NODE's GPU FAULT_GPU falls off the bus after
    FAULT_AFTER_S seconds."""

    def __init__(self, tmp: Path, names: str = "native") -> None:
        self.tmp = tmp
        self.names = names
        tmp.mkdir(parents=True, exist_ok=True)
        self.nodes = sorted({n for n, _ in twin_devices().values()})
        self.ports = [free_port() for _ in self.nodes]
        self.procs: list[ServerProcess | None] = [None] * len(self.nodes)

    def start_all(self) -> None:
        for i in range(len(self.nodes)):
            self.start(i)

    @property
    def targets(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def start(self, i: int, fault: bool = True) -> None:
        args = [sys.executable, "-m", "gpufleet", "exporter", "--source", "twin", "--twin-node", self.nodes[i],
                "--listen", self.targets[i], "--interval", "1", "--names", self.names]
        if fault and i == FAULT_NODE:
            args += ["--twin-fault", f"fall_off_bus:{FAULT_GPU}:{FAULT_AFTER_S:g}"]
        env = {"GPUFLEET_TWIN__NODES": str(NODES), "GPUFLEET_TWIN__GPUS_PER_NODE": str(GPUS),
               "GPUFLEET_TWIN__SEED": str(SEED), "GPUFLEET_TWIN__FAILURES": "false",
               "GPUFLEET_DATA_DIR": str(self.tmp / f"data{i}")}
        proc = ServerProcess(args, self.tmp / f"exporter{i}-{len(os.listdir(self.tmp))}.log", env=env)
        proc.wait_http(f"http://{self.targets[i]}/metrics", timeout=60)
        self.procs[i] = proc

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None:
            proc.stop()
            self.procs[i] = None

    def metrics(self, i: int) -> str:
        return httpx.get(f"http://{self.targets[i]}/metrics", timeout=5).text

    def wait_fault(self, timeout: float = 30.0) -> None:
        """Until the faulty GPU's exporter itself reports it lost (native) or drops it (dcgm)."""
        uuid = next(u for u, (n, i) in twin_devices().items()
                    if n == self.nodes[FAULT_NODE] and i == FAULT_GPU)

        def lost() -> bool:
            text = self.metrics(FAULT_NODE)
            if self.names == "native":
                return any(line.startswith("gpufleet_gpu_up{") and uuid in line and line.endswith(" 0")
                           for line in text.splitlines())
            return f'UUID="{uuid}"' not in text
        wait_until(lost, timeout, "the injected fault", interval=0.1)

    def stop(self) -> None:
        for i in range(len(self.procs)):
            self.kill(i)


def scraper(kind: str, tmp: Path, targets: list[str]) -> Prometheus | VictoriaMetrics:
    """A real Prometheus or VictoriaMetrics scraping ``targets`` every second (job ``gpu``)."""
    if kind == "prometheus":
        p = Prometheus(tmp, targets)
        return p
    cfg = tmp / "scrape.yml"
    tmp.mkdir(parents=True, exist_ok=True)
    cfg.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gpufleet\n    static_configs:\n"
                   f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
    return VictoriaMetrics(tmp, extra_args=[f"-promscrape.config={cfg}", "-search.maxStalenessInterval=3s"])
