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

The fake NVML is not free (a Python call per NVML function, ctypes structs for field values): its own
time is measured by replaying the NVML calls of one recorded cycle straight into the fake, and is shown
beside the CPU per device, with gpufleet's own share (the total minus the fake's) next to it.

``--baseline REV`` measures the same figures for git revision REV (its exporter and its fake NVML, from
``git archive`` into a temporary folder) in the same run and prints the ratios.

Usage: python benchmarks/exporter_overhead.py [--window 30] [--source nvml|synthetic] [--baseline REV]
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

ROOT = Path(os.environ.get("GPUFLEET_BENCH_ROOT") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))  # the tree measured: this checkout, or a baseline revision

HEAVY = ("torch", "pandas", "statsmodels", "sklearn")


def make_source(kind: str, n: int):  # type: ignore[no-untyped-def]
    if kind == "synthetic":
        from tests.exporter.synthetic import SyntheticSource

        return SyntheticSource(n, node="bench", mig=False)
    from gpufleet.exporter.sources.nvml import NvmlSource

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
    from gpufleet.exporter.loop import CollectionLoop, tune_process
    from gpufleet.exporter.sinks.prometheus import PrometheusSink
    from gpufleet.exporter.sinks.web import MetricsServer

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


ENV: dict[str, str] = dict(os.environ)
"""The environment of the child processes (GPUFLEET_BENCH_ROOT picks the tree they measure)."""


class Exporter:
    def __init__(self, kind: str, n: int, interval: float) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", kind, str(n), str(interval)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
        assert self.proc.stdout is not None
        self.port = json.loads(self.proc.stdout.readline())["port"]
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def finish(self) -> dict:  # type: ignore[type-arg]
        out, _ = self.proc.communicate("done\n", timeout=120)
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _fake_nvml_ms(src, n: int, cycles: int) -> float:  # type: ignore[no-untyped-def]
    """CPU ms per device per cycle spent inside the fake NVML: one cycle's calls are recorded, then
    replayed straight into the fake ``cycles`` times (minus the replay loop's own cost)."""
    mod = src.query.nvml
    calls: list[tuple[object, tuple, dict]] = []  # type: ignore[type-arg]
    originals = {}
    for name in dir(mod):
        func = getattr(mod, name)
        if name.startswith("nvml") and callable(func) and name != "nvmlEventSetWait":
            originals[name] = func

            def record(*a, _f=func, **k):  # type: ignore[no-untyped-def]
                calls.append((_f, a, k))
                return _f(*a, **k)
            setattr(mod, name, record)
    try:
        src.collect(time.time())
    finally:
        for name, func in originals.items():
            setattr(mod, name, func)
    err = mod.NVMLError

    def replay(items: list[tuple[object, tuple, dict]]) -> float:  # type: ignore[type-arg]
        t = time.process_time()
        for _ in range(cycles):
            for f, a, k in items:
                try:  # noqa: SIM105 (a plain try is the cheaper loop, which is what is timed)
                    f(*a, **k)  # type: ignore[operator]
                except err:
                    pass
        return time.process_time() - t

    def noop(*a: object, **k: object) -> None:
        return None

    spent = replay(calls) - replay([(noop, a, k) for _f, a, k in calls])
    return max(0.0, spent) / cycles * 1000 / n


def cycle_cost(kind: str, n: int, cycles: int) -> dict[str, float]:
    """In a process of its own: CPU ms per device per cycle for the source alone, for collect + render,
    and (fake NVML) the part of the source's time spent inside the fake library."""
    from gpufleet.exporter.loop import CollectionLoop, tune_process
    from gpufleet.exporter.sinks.prometheus import PrometheusSink

    src = make_source(kind, n)
    src.open()
    if os.environ.get("GPUFLEET_BENCH_NO_TUNE") != "1":
        tune_process()  # GC and GIL settings of the exporter process, as `gpufleet exporter` does
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
        fake = _fake_nvml_ms(src, n, max(3, cycles)) if kind == "nvml" else 0.0
    finally:
        src.close()
    return {"source": source_only * 1000 / n, "full": full * 1000 / n, "fake": fake}


def _get(sock: socket.socket, buf: bytearray, gzip: bool = False) -> int:
    """One GET /metrics on a kept-alive connection; reads the body into ``buf`` (a lean client, like
    Prometheus's Go one, so the figure is the exporter's latency, not Python's HTTP parsing). ``gzip``:
    send ``Accept-Encoding: gzip`` as Prometheus does (the time includes no decompression)."""
    accept = b"Accept-Encoding: gzip\r\n" if gzip else b""
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n" + accept + b"\r\n")
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


def scrape_latency(kind: str, n: int, interval: float, scrapes: int, spacing: float,
                   gzip: bool = False) -> tuple[float, float, int]:
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
                size = _get(sock, buf, gzip)
                dt = time.perf_counter() - t
                if i >= 3:
                    lat.append(dt * 1000)
                time.sleep(spacing)
    finally:
        exp.finish()
    return statistics.median(lat), pct(lat, 0.99), size


def _cycle_child(kind: str, n: int, cycles: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--cycle", kind, str(n), str(cycles)], env=ENV,
                         capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


Row = tuple[str, float, float | None, str]


def measure(kind: str, window: float) -> tuple[list[Row], list[str]]:
    """Every figure for the tree ENV points at: (name, value, target, unit) rows and notes."""
    import httpx

    rows: list[Row] = []
    notes: list[str] = []
    for n, cycles in ((8, 50), (1000, 3)):
        got = _cycle_child(kind, n, cycles)
        rows.append((f"CPU per device per cycle, {n} devices (collect + render)", got["full"], 0.5, "ms"))
        rows.append((f"  of which the NVML source, {n} devices", got["source"], None, "ms"))
        if kind == "nvml":
            rows.append((f"  of which inside the fake NVML, {n} devices", got["fake"], None, "ms"))
            rows.append((f"CPU per device per cycle, {n} devices, gpufleet's own (total - fake NVML)",
                         got["full"] - got["fake"], 0.5, "ms"))
    p50, p99, size = scrape_latency(kind, 8, 1.0, 300, 0.01)  # collects every 1 s: scrapes race re-renders
    rows.append(("scrape p50, 8 devices", p50, None, "ms"))
    rows.append(("scrape p99, 8 devices", p99, 5.0, "ms"))
    notes.append(f"8-device body {size / 1e3:.0f} kB")
    p50, p99, size = scrape_latency(kind, 1000, 10.0, 60, 0.25)  # default interval; spans a collection
    rows.append(("scrape p50, 1,000 devices", p50, None, "ms"))
    rows.append(("scrape p99, 1,000 devices", p99, 100.0, "ms"))
    notes.append(f"1,000-device body {size / 1e6:.1f} MB")
    p50, p99, gz_size = scrape_latency(kind, 1000, 10.0, 60, 0.25, gzip=True)
    rows.append(("scrape p50, 1,000 devices, Accept-Encoding: gzip", p50, None, "ms"))
    rows.append(("scrape p99, 1,000 devices, Accept-Encoding: gzip", p99, 100.0, "ms"))
    notes.append(f"1,000-device body asked with gzip {gz_size / 1e6:.2f} MB"
                 + (" (served uncompressed: this tree has no gzip)" if gz_size == size else ""))

    exp = Exporter(kind, 8, 10.0)
    with httpx.Client(timeout=30) as client:
        t_end = time.monotonic() + window
        while time.monotonic() < t_end:
            client.get(exp.url).raise_for_status()  # one scrape per collection interval
            time.sleep(min(10.0, max(0.0, t_end - time.monotonic())))
    stats = exp.finish()
    rows.append((f"CPU share of a core, 8 GPUs, 10 s interval ({stats['wall_s']:.0f} s window)",
                 100 * stats["cpu_s"] / stats["wall_s"], 1.0, "%"))
    rows.append(("exporter RSS, 8 GPUs (peak)", stats["hwm_kb"] / 1024, 80.0, "MB"))
    notes.append(f"heavy modules imported by the exporter process: {stats['heavy'] or 'none'}")
    return rows, notes


def _baseline_tree(rev: str, into: Path) -> Path:
    """``git archive rev`` of this checkout unpacked into ``into`` (read-only use of the repository)."""
    here = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(here), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=["nvml", "synthetic"], default="nvml")
    ap.add_argument("--window", type=float, default=30.0, help="seconds of the CPU-share run (10 s interval)")
    ap.add_argument("--baseline", metavar="REV", help="also measure git revision REV and print ratios")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--cycle", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, n, interval = args.child
        child(kind, int(n), float(interval), 0)
        return
    if args.cycle:
        kind, n, cycles = args.cycle
        print(json.dumps(cycle_cost(kind, int(n), int(cycles))), flush=True)
        return
    import tempfile

    kind = args.source
    print(f"gpufleet exporter overhead (source: {'fake NVML' if kind == 'nvml' else 'synthetic'}, "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())})")
    base: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gpufleet-baseline-") as tmp:
        if args.baseline:
            ENV["GPUFLEET_BENCH_ROOT"] = str(_baseline_tree(args.baseline, Path(tmp)))
            rows, notes = measure(kind, args.window)
            base = {name: value for name, value, _t, _u in rows}
            for note in notes:
                print(f"baseline {args.baseline}: {note}")
        ENV["GPUFLEET_BENCH_ROOT"] = str(Path(__file__).resolve().parents[1])
        rows, notes = measure(kind, args.window)
    for note in notes:
        print(f"this tree: {note}")
    width = max(len(r[0]) for r in rows)
    head = f"{'figure':<{width}}  {'measured':>10}"
    if base:
        head += f"  {'baseline':>10}  {'ratio':>6}"
    print(f"{head}  {'target':>10}  ok")
    for name, value, target, unit in rows:
        line = f"{name:<{width}}  {value:>7.3f} {unit:<2}"
        if base:
            b = base.get(name)
            line += f"  {b:>7.3f} {unit:<2}  {value / b:>6.2f}" if b else f"  {'':>10}  {'':>6}"
        tgt = f"<= {target:g} {unit}" if target is not None else ""
        ok = "" if target is None else ("yes" if value <= target else "NO")
        print(f"{line}  {tgt:>10}  {ok}")


if __name__ == "__main__":
    main()
