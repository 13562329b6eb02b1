"""Fleet mode at scale: a synthetic N-GPU fleet written straight into a real VictoriaMetrics, read back the
way `gpufleet serve --fleet-url` reads it.

Writes, through VictoriaMetrics' JSON-lines import API (/api/v1/import), for every GPU every series a
gpufleet exporter emits for an NVIDIA GPU (the twin's series: 106 per GPU, with the exporter's labels and
``instance`` / ``job``) for the last hour at 1-minute steps, and the failure model's training fields (and
``gpufleet_gpu_up``) for the ``--days`` before at 5-minute steps; per node ``up`` and the exporter's node
info. Values: each series is one of 64 random-walk variants around the twin's own value for that field.

Then measures, each in its own process (peak RSS is that process's high-water mark, imports included):

* ``cycle``: one fleet cycle (inventory + live state of every GPU) — time and queries per cycle;
* ``score``: serve's scoring run — 7 h of history at 60 s read back, then every GPU scored in one batch
  by an LSTM failure model (fitted on a small sample first, not timed);
* ``train``: the ``--days`` of training fields of every GPU read into the training panel (daily chunks)
  and cut into training windows (X, mask, y).

Targets (issue #15): cycle <= 2 s and <= 20 queries; scoring <= 2 s; training read <= 120 s on 2 cores.

    python benchmarks/fleet_cycle.py                       # 1,250 nodes x 8 GPUs, 7 days
    python benchmarks/fleet_cycle.py --nodes 125 --days 2  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

JOB = "gpu"
VARIANTS = 64


def _rss_mib() -> float:
    """This process's peak resident memory (VmHWM: reset by exec, unlike ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------------------------- writing
def templates() -> tuple[list[tuple[str, dict[str, str], float, bool]], Any]:
    """(series name, field labels, typical value, is counter) of every series one exporter emits for one
    twin GPU, and that GPU's Device."""
    from gpufleet.exporter.catalogue import catalogue
    from gpufleet.simulator.twin import TwinConfig, TwinSource

    src = TwinSource(TwinConfig(nodes=1, gpus_per_node=1, seed=1, failures=False))
    src.open()
    t = time.time()
    src.collect(t - 60)
    snap = src.collect(t)
    cat = catalogue()
    out = []
    for s in snap.samples:
        m = cat.field(s.field)
        if m.scope != "device" or m.type == "info":
            continue
        out.append((m.name, dict(s.labels), float(s.value), m.is_counter))
    out.append((cat.field("up").name, {}, 1.0, False))
    return sorted(out, key=lambda x: (x[0], sorted(x[1].items()))), snap.devices[0]


def _fmt(values: np.ndarray) -> str:
    return ",".join(f"{v:.6g}" for v in values.tolist())


def value_pools(tpls: list[tuple[str, dict[str, str], float, bool]], n: int, rng: np.random.Generator,
                ) -> list[list[str]]:
    """For each template, VARIANTS formatted value strings of ``n`` points each."""
    pools = []
    for name, _labels, v, counter in tpls:
        variants = []
        for _ in range(VARIANTS):
            if name == "gpufleet_gpu_up":
                vals = np.ones(n)
            elif counter:
                vals = np.round(max(v, 1.0) + np.cumsum(rng.poisson(max(v, 1.0) * 1e-3 + 0.01, n)))
            elif v == 0:
                vals = np.zeros(n)
            else:
                walk = np.clip(1 + np.cumsum(rng.normal(0, 0.003, n)), 0.5, 1.5)
                vals = v * walk
                if abs(v) >= 10:
                    vals = np.round(vals)
            variants.append(_fmt(vals))
        pools.append(variants)
    return pools


def write_fleet(url: str, nodes: int, per_node: int, days: float, now: float, seed: int = 0) -> dict[str, Any]:
    import httpx
    from gpufleet.analytics.datasets import FAILURE_FIELDS
    from gpufleet.exporter.catalogue import catalogue

    cat = catalogue()
    rng = np.random.default_rng(seed)
    tpls, dev = templates()
    train_names = {cat.field(f).name for f in FAILURE_FIELDS} | {cat.field("up").name}
    hour_ts = now - 60.0 * np.arange(59, -1, -1)
    n5 = int(days * 86400 // 300)
    old_ts = hour_ts[0] - 300.0 * np.arange(n5, 0, -1)
    ts_hour = ",".join(str(int(t * 1000)) for t in hour_ts)
    ts_long = ",".join(str(int(t * 1000)) for t in np.concatenate([old_ts, hour_ts]))
    hour_pools = value_pools(tpls, 60, rng)
    long_tpl = [i for i, t in enumerate(tpls) if t[0] in train_names]
    long_pools = dict(zip(long_tpl, value_pools([tpls[i] for i in long_tpl], n5 + 60, rng), strict=True))
    # one GPU in 200 is lost for a while in the older history: failure labels for the training read
    lost_n = max(1, n5 // 20)
    lost_up = _fmt(np.concatenate([np.ones(n5 - 2 * lost_n), np.zeros(lost_n), np.ones(lost_n + 60)]))
    ones = _fmt(np.ones(60))
    t0 = time.perf_counter()
    points = series = 0

    def lines(node_lo: int, node_hi: int) -> Any:
        nonlocal points, series
        for k in range(node_lo, node_hi):
            node = f"node-{k:05d}"
            inst = f"10.{k // 65536}.{k // 256 % 256}.{k % 256}:19835"
            base = {"instance": inst, "job": JOB}
            yield (f'{{"metric":{json.dumps({"__name__": "up", **base})},"values":[{ones}],'
                   f'"timestamps":[{ts_hour}]}}\n')
            for name, v in (("gpufleet_node_cpus", 128), ("gpufleet_node_memory_total_bytes", 2 << 40)):
                yield (f'{{"metric":{json.dumps({"__name__": name, "node": node, **base})},'
                       f'"values":[{_fmt(np.full(60, float(v)))}],"timestamps":[{ts_hour}]}}\n')
            series += 3
            points += 180
            for g in range(per_node):
                uuid = f"GPU-{k:05d}{g:03d}-0000-4000-8000-{seed:012d}"
                ident = {"uuid": uuid, "gpu": str(g), "node": node, "model": dev.model,
                         "pci_bus_id": f"00000000:{0x18 + g:02X}:00.0", "vendor": "nvidia"}
                info = {"__name__": "gpufleet_gpu_info", **ident, "driver_version": dev.driver_version or "",
                        "cuda_version": dev.cuda_version or "", "serial": f"{k:08d}{g:04d}",
                        "virtualization": "baremetal", **base}
                yield f'{{"metric":{json.dumps(info)},"values":[{ones}],"timestamps":[{ts_hour}]}}\n'
                lost = rng.random() < 0.005
                for i, (name, labels, _v, _c) in enumerate(tpls):
                    metric = json.dumps({"__name__": name, **ident, **labels, **base})
                    pick = int(rng.integers(VARIANTS))
                    if i in long_pools:
                        vals = lost_up if lost and name == "gpufleet_gpu_up" else long_pools[i][pick]
                        yield f'{{"metric":{metric},"values":[{vals}],"timestamps":[{ts_long}]}}\n'
                        points += n5 + 60
                    else:
                        yield f'{{"metric":{metric},"values":[{hour_pools[i][pick]}],"timestamps":[{ts_hour}]}}\n'
                        points += 60
                series += 1 + len(tpls)
                points += 60

    batch = 10
    with httpx.Client(timeout=600) as client:
        for lo in range(0, nodes, batch):
            body = "".join(lines(lo, min(nodes, lo + batch))).encode()
            r = client.post(f"{url}/api/v1/import", content=body)
            if r.status_code >= 300:
                raise SystemExit(f"import failed: HTTP {r.status_code} {r.text[:300]}")
        client.get(f"{url}/internal/force_flush")
    return {"series": series, "points": points, "write_s": time.perf_counter() - t0,
            "series_per_gpu": len(tpls) + 1, "training_series_per_gpu": len(long_pools)}


# ---------------------------------------------------------------------------------------------- phases
def phase_cycle(url: str, now: float, repeat: int = 3) -> dict[str, Any]:
    from gpufleet.analytics.fleet.reader import LIVE_FIELDS, VictoriaFleet

    base = _rss_mib()
    times = []
    with VictoriaFleet(url, names="native", selector=f'{{job="{JOB}"}}', fields=LIVE_FIELDS,
                       stale_after=300, timeout=120) as reader:
        for _ in range(repeat):
            view = reader.read(now)
            times.append(view.duration_s)
        assert not view.silent_nodes(), view.silent_nodes()[:5]
    return {"cycle_s": times, "queries": view.queries, "gpus": len(view.devices), "nodes": len(view.nodes),
            "ok": sum(h == "ok" for h in view.health.values()), "rss_after_imports_mib": base,
            "peak_rss_mib": _rss_mib()}


def _fitted_model(panel: Any) -> Any:
    """An LSTM failure model fitted (briefly) on windows of a sample of the panel's GPUs."""
    from gpufleet.analytics.datasets import Panel
    from gpufleet.analytics.scoring import latest_windows
    from gpufleet.models.lstm_failure import LSTMFailure

    n = min(256, len(panel.uuids))
    sub = Panel(panel.uuids[:n], panel.times, panel.fields, panel.values[:n])
    X, mask = latest_windows(sub, 6 * 3600.0)
    y = np.zeros((n, 2), np.int8)
    y[: max(1, n // 10)] = 1
    m = LSTMFailure(epochs=1, threads=None)
    m.fit(X, mask, y, feature_names=panel.fields, horizons=(3600.0, 86400.0))
    return m


def phase_score(url: str, now: float) -> dict[str, Any]:
    from gpufleet.analytics.fleet.history import ScrapedVictoriaReader, read_history
    from gpufleet.analytics.scoring import score_panel

    base = _rss_mib()
    with ScrapedVictoriaReader(url, selector={"job": JOB}, timeout=600) as reader:
        t0 = time.perf_counter()
        hist = read_history(reader, now - 7 * 3600.0, now + 60, 60.0)  # what serve's scoring reads
        read_s = time.perf_counter() - t0
    model = _fitted_model(hist.panel)
    t0 = time.perf_counter()
    scores = score_panel(model, hist.panel, window=6 * 3600.0)
    score_s = time.perf_counter() - t0
    return {"read_s": read_s, "score_s": score_s, "gpus_scored": len(scores.uuids),
            "finite": bool(np.isfinite(scores.risk).all()), "rss_after_imports_mib": base,
            "peak_rss_mib": _rss_mib()}


def phase_train(url: str, now: float, days: float) -> dict[str, Any]:
    from gpufleet.analytics.datasets import make_windows
    from gpufleet.analytics.fleet.history import ScrapedVictoriaReader, read_history

    base = _rss_mib()
    with ScrapedVictoriaReader(url, selector={"job": JOB}, timeout=600) as reader:
        t0 = time.perf_counter()
        hist = read_history(reader, now - days * 86400.0, now + 60, 300.0)
        read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ws = make_windows(hist.panel, hist.failures, window=6 * 3600.0, stride=3600.0, horizons=(3600.0, 86400.0))
    windows_s = time.perf_counter() - t0
    p = hist.panel
    return {"read_s": read_s, "windows_s": windows_s, "gpus": len(p.uuids), "steps": len(p.times),
            "fields": len(p.fields), "panel_mib": p.values.nbytes / 2**20, "windows": len(ws),
            "gpus_with_failures": len(hist.failures), "rss_after_imports_mib": base, "peak_rss_mib": _rss_mib()}


# ---------------------------------------------------------------------------------------------- driver
def _run_phase(args: argparse.Namespace, phase: str, url: str, now: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", phase, "--url", url, "--now", repr(now), "--days", str(args.days)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1250)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--days", type=float, default=7.0, help="days of training fields at 5-minute steps")
    ap.add_argument("--url", help="an empty VictoriaMetrics to use (default: start one in a temporary folder)")
    ap.add_argument("--phase", choices=("cycle", "score", "train"), help=argparse.SUPPRESS)
    ap.add_argument("--now", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--skip-write", action="store_true", help="the fleet is already in --url (with --now)")
    args = ap.parse_args()
    if args.phase:
        res = {"cycle": lambda: phase_cycle(args.url, args.now),
               "score": lambda: phase_score(args.url, args.now),
               "train": lambda: phase_train(args.url, args.now, args.days)}[args.phase]()
        print(json.dumps(res))
        return
    proc = tmp = None
    url = args.url
    if url is None:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise SystemExit("victoria-metrics is not installed (apt-get install victoria-metrics)")
        import socket

        import httpx

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            free_port = sock.getsockname()[1]
        tmp = Path(tempfile.mkdtemp(prefix="gpufleet-fleet-bench-"))
        port = free_port
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([binary, f"-storageDataPath={tmp}", f"-httpListenAddr=127.0.0.1:{port}",
                                 "-retentionPeriod=100y", "-search.latencyOffset=0s", "-search.disableCache",
                                 "-search.maxUniqueTimeseries=10000000", "-search.maxSamplesPerQuery=5000000000"],
                                stdout=subprocess.DEVNULL, stderr=open(tmp / "vm.log", "w"))  # noqa: SIM115
        for _ in range(100):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
    try:
        now = args.now or float(int(time.time() // 60 * 60) - 120)
        gpus = args.nodes * args.gpus_per_node
        print(f"fleet: {args.nodes} nodes x {args.gpus_per_node} GPUs = {gpus} GPUs, {args.days:g} days of "
              f"training fields; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        if not args.skip_write:
            w = write_fleet(url, args.nodes, args.gpus_per_node, args.days, now)
            print(f"write:  {w['series']:,} series, {w['points']:,} points in {w['write_s']:.0f} s "
                  f"({w['series_per_gpu']} series per GPU, {w['training_series_per_gpu']} with {args.days:g} days)")
            time.sleep(2)
        c = _run_phase(args, "cycle", url, now)
        print(f"cycle:  {min(c['cycle_s']):.2f} s (first {c['cycle_s'][0]:.2f} s), {c['queries']} queries per "
              f"cycle, {c['gpus']} GPUs ({c['ok']} ok) on {c['nodes']} nodes; peak RSS {c['peak_rss_mib']:.0f} MiB "
              f"({c['rss_after_imports_mib']:.0f} after imports)   [target <= 2 s, <= 20 queries]")
        s = _run_phase(args, "score", url, now)
        print(f"score:  {s['score_s']:.2f} s to score {s['gpus_scored']} GPUs in one batch (LSTM); reading "
              f"their 7 h at 60 s: {s['read_s']:.1f} s; peak RSS {s['peak_rss_mib']:.0f} MiB "
              f"({s['rss_after_imports_mib']:.0f} after imports)   [target <= 2 s]")
        t = _run_phase(args, "train", url, now)
        print(f"train:  {t['read_s']:.1f} s to read {args.days:g} days of {t['fields']} fields for {t['gpus']} GPUs "
              f"({t['steps']} steps, panel {t['panel_mib']:.0f} MiB) + {t['windows_s']:.1f} s for "
              f"{t['windows']:,} training windows; {t['gpus_with_failures']} GPUs with failure labels; peak RSS "
              f"{t['peak_rss_mib']:.0f} MiB ({t['rss_after_imports_mib']:.0f} after imports)   [target <= 120 s]")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
