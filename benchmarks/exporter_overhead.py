#!/usr/bin/env python
"""Exporter overhead with a zero-cost fake NVML: what gpufleet itself costs.

Figures (targets from issue 2):
- CPU time per device per collection cycle (collect + render)      target <= 0.5 ms
- scrape latency p50 / p99 of GET /metrics, 8 devices               target p99 <= 5 ms
- scrape latency p50 / p99 of GET /metrics, 1,000 devices           target p99 <= 100 ms
- resident memory of the exporter process (8 GPUs)                  target <= 80 MB
- CPU share of one core, 8 GPUs, 10 s interval, scraped every 10 s  target < 1 %

The exporter runs in a subprocess that imports only ``exporter`` (and the fake ``pynvml``); the
scraper is this process, over loopback with a kept-alive connection, while the exporter keeps
collecting in the background (8 devices: every 1 s, so scrapes race re-renders; 1,000 devices: every
10 s, the default, with the scrapes spread over more than one interval). The fake NVML is the scripted module of the tests (Python functions, H100s with
18 NVLinks), so the collection figure is an upper bound of gpufleet's own cost.

Usage: python benchmarks/exporter_overhead.py [--window 30] [--source nvml|synthetic]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEAVY = ("torch", "pandas", "statsmodels", "sklearn")


def make_source(kind: str, n: int):  # type: ignore[no-untyped-def]
    if kind == "synthetic":
        from tests.exporter.synthetic import SyntheticSource

        return SyntheticSource(n, node="bench", mig=False)
    from exporter.sources.nvml import NvmlSource
    from tests.exporter.fake_pynvml import FakeGpu, FakeNvml

    fake = FakeNvml([FakeGpu(f"GPU-{i:08d}-0000-4000-8000-000000000000") for i in range(n)])
    return NvmlSource(nvml=fake.module, node="bench", xid_wait_ms=200)


def _rss_kb() -> tuple[int, int]:
    rss = hwm = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def child(kind: str, n: int, interval: float, window: float) -> None:
    """The exporter process: serve /metrics, then report CPU, RSS and loaded modules as JSON."""
    from exporter.loop import CollectionLoop, tune_process
    from exporter.sinks.prometheus import PrometheusSink
    from exporter.sinks.web import MetricsServer

    src = make_source(kind, n)
    src.open()
    if os.environ.get("GPUFLEET_BENCH_NO_TUNE") != "1":
        tune_process()  # as `gpufleet exporter` does
    loop = CollectionLoop(src, interval=interval)
    sink = PrometheusSink(loop)
    server = MetricsServer(sink.render_chunks, "127.0.0.1", 0).start()
    loop.start()
    loop.wait_cycles(1, timeout=120)
    cpu0, wall0 = time.process_time(), time.monotonic()
    print(json.dumps({"port": server.port}), flush=True)
    sys.stdin.readline()  # the parent closes stdin (or writes a line) when it is done
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    rss, hwm = _rss_kb()
    cycles = loop.cycles
    server.stop()
    loop.stop()
    src.close()
    print(json.dumps({"cpu_s": cpu, "wall_s": wall, "rss_kb": rss, "hwm_kb": hwm, "cycles": cycles,
                      "heavy": [m for m in HEAVY if m in sys.modules]}), flush=True)


class Exporter:
    def __init__(self, kind: str, n: int, interval: float) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", kind, str(n), str(interval)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        self.port = json.loads(self.proc.stdout.readline())["port"]
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def finish(self) -> dict:  # type: ignore[type-arg]
        out, _ = self.proc.communicate("done\n", timeout=120)
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def cycle_cost(kind: str, n: int, cycles: int) -> tuple[float, float]:
    """In-process: CPU ms per device per cycle for the source alone and for collect + render."""
    from exporter.loop import CollectionLoop
    from exporter.sinks.prometheus import PrometheusSink

    src = make_source(kind, n)
    src.open()
    try:
        loop = CollectionLoop(src, interval=1)
        PrometheusSink(loop)
        loop.collect_once()
        t = time.process_time()
        for _ in range(cycles):
            src.collect(time.time())
        source_only = (time.process_time() - t) / cycles
        t = time.process_time()
        for _ in range(cycles):
            loop.collect_once()
        full = (time.process_time() - t) / cycles
    finally:
        src.close()
    return source_only * 1000 / n, full * 1000 / n


def _get(sock: socket.socket, buf: bytearray) -> int:
    """One GET /metrics on a kept-alive connection; reads the body into ``buf`` (a lean client, like
    Prometheus's Go one, so the figure is the exporter's latency, not Python's HTTP parsing)."""
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
    view = memoryview(buf)
    got = 0
    while True:
        got += sock.recv_into(view[got:])
        end = bytes(buf[:got]).find(b"\r\n\r\n") if got < 65536 else buf.find(b"\r\n\r\n", 0, 65536)
        if end >= 0:
            break
    head = bytes(buf[:end]).decode()
    assert head.startswith("HTTP/1.1 200"), head[:80]
    length = int(next(h.split(":", 1)[1] for h in head.split("\r\n") if h.lower().startswith("content-length")))
    total = end + 4 + length
    while got < total:
        got += sock.recv_into(view[got:])
    return length


def scrape_latency(kind: str, n: int, interval: float, scrapes: int, spacing: float) -> tuple[float, float, int]:
    """GET /metrics ``scrapes`` times over one kept-alive connection, ``spacing`` s apart, while the
    exporter collects every ``interval`` s; returns p50 and p99 in ms and the body size."""
    exp = Exporter(kind, n, interval)
    try:
        lat: list[float] = []
        size = 0
        buf = bytearray(256 << 20)
        with socket.create_connection(("127.0.0.1", exp.port), timeout=60) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(scrapes + 3):
                t = time.perf_counter()
                size = _get(sock, buf)
                dt = time.perf_counter() - t
                if i >= 3:
                    lat.append(dt * 1000)
                time.sleep(spacing)
    finally:
        exp.finish()
    return statistics.median(lat), pct(lat, 0.99), size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=["nvml", "synthetic"], default="nvml")
    ap.add_argument("--window", type=float, default=30.0, help="seconds of the CPU-share run (10 s interval)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, n, interval = args.child
        child(kind, int(n), float(interval), 0)
        return
    import httpx

    kind = args.source
    print(f"gpufleet exporter overhead (source: {'fake NVML' if kind == 'nvml' else 'synthetic'}, "
          f"{os.cpu_count()} CPUs)")
    rows: list[tuple[str, float, float | None, str]] = []
    for n, cycles in ((8, 50), (1000, 3)):
        src_ms, full_ms = cycle_cost(kind, n, cycles)
        rows.append((f"CPU per device per cycle, {n} devices (source only {src_ms:.3f} ms)", full_ms, 0.5, "ms"))
    p50, p99, size = scrape_latency(kind, 8, 1.0, 300, 0.01)  # collects every 1 s: scrapes race re-renders
    rows.append((f"scrape p50, 8 devices ({size / 1e3:.0f} kB)", p50, None, "ms"))
    rows.append(("scrape p99, 8 devices", p99, 5.0, "ms"))
    p50, p99, size = scrape_latency(kind, 1000, 10.0, 60, 0.25)  # default interval; spans a collection
    rows.append((f"scrape p50, 1,000 devices ({size / 1e6:.1f} MB)", p50, None, "ms"))
    rows.append(("scrape p99, 1,000 devices", p99, 100.0, "ms"))

    exp = Exporter(kind, 8, 10.0)
    with httpx.Client(timeout=30) as client:
        t_end = time.monotonic() + args.window
        while time.monotonic() < t_end:
            client.get(exp.url).raise_for_status()  # one scrape per collection interval
            time.sleep(min(10.0, max(0.0, t_end - time.monotonic())))
    stats = exp.finish()
    share = 100 * stats["cpu_s"] / stats["wall_s"]
    rows.append((f"CPU share of a core, 8 GPUs, 10 s interval ({stats['wall_s']:.0f} s window)", share, 1.0, "%"))
    rows.append(("exporter RSS, 8 GPUs (peak)", stats["hwm_kb"] / 1024, 80.0, "MB"))

    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'measured':>10}  {'target':>10}  ok")
    for name, value, target, unit in rows:
        tgt = f"<= {target:g} {unit}" if target is not None else ""
        ok = "" if target is None else ("yes" if value <= target else "NO")
        print(f"{name:<{width}}  {value:>7.3f} {unit:<2}  {tgt:>10}  {ok}")
    print(f"heavy modules imported by the exporter process: {stats['heavy'] or 'none'}")


if __name__ == "__main__":
    main()
