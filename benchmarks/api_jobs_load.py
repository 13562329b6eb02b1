"""`GET /gpus` throughput while jobs are submitted, on a 10,000-GPU service with its queue in the database.

Builds the service as `gpufleet serve` does (`build_service`, embedded defaults: SQLite in the data folder,
the audit log, the job service over the allocator queue) on a digital twin of 1,250 nodes x 8 GPUs, fills
the cluster with running jobs and queues ``--pending`` more (so every pass sees them all), serves the API
under uvicorn on a free loopback port, and runs the queue's per-cycle pass (`tick`, under the job service's
lock) every ``--cycle`` seconds in the background, as the service's loop does. Then, in one run:

  1. Debian's `wrk` on `GET /gpus` alone,
  2. the same `wrk` while a separate process submits jobs (`POST /jobs`, one job each, ``--rate`` a second),
     recording each submission's latency,

once with the queue in the database and once with persistence off (the same service, the queue writing
nothing). Targets (issue #16): `GET /gpus` together >= 80 % of alone, submission p99 <= 20 ms.

    python benchmarks/api_jobs_load.py [--nodes 1250] [--pending 10000] [--seconds 10] [--rate 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.api_load import parse_wrk  # noqa: E402  (the sibling benchmark's wrk reader)

PASSWORD = "benchmark-password-123"


def submitter(url: str, token: str, rate: float, seconds: float) -> None:
    """(Run in its own process, so the client does not share the server's interpreter.) POST one job at a
    time at ``rate`` per second for ``seconds``; print the latencies (ms) and failures as JSON."""
    import httpx

    lat: list[float] = []
    failed = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        start = time.perf_counter()
        k = 0
        while (now := time.perf_counter()) - start < seconds:
            due = start + k / rate
            if now < due:
                time.sleep(due - now)
            t = time.perf_counter()
            r = client.post("/jobs", json={"jobs": [{"name": f"load{k}", "gpus": 1, "duration_s": 86400}]})
            lat.append((time.perf_counter() - t) * 1e3)
            failed += r.status_code != 201
            k += 1
    print(json.dumps({"latency_ms": lat, "failed": failed}))


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def build(tmp: Path, nodes: int, persist: bool) -> Any:
    """The service (API not started yet) on a ``nodes`` x 8 twin; ``persist=False``: the queue writes nothing."""
    from gpufleet.simulator.twin import TwinConfig, TwinSource

    from gpufleet.api.context import initialise
    from gpufleet.service import build_service
    from gpufleet.settings import load_settings
    from tests.servers import free_port

    data = tmp / ("db" if persist else "off")
    settings = load_settings(None, {
        "data_dir": str(data),
        "exporter": {"source": "twin", "interval": 3600, "listen": f"127.0.0.1:{free_port()}"},
        "serve": {"metrics_listen": f"127.0.0.1:{free_port()}"},
        "api": {"listen": f"127.0.0.1:{free_port()}", "password_hash_time_cost": 1,
                "password_hash_memory_kib": 8192},
        "executor": {"kind": "simulated"},
    })
    pw = tmp / "pw"
    pw.write_text(PASSWORD)
    initialise(settings.api, data, password_file=pw)
    source = TwinSource(TwinConfig(nodes=nodes, gpus_per_node=8, seed=1, fields="history", failures=False),
                        start=1.7e9)
    svc = build_service(settings, source=source)
    if not persist:
        svc.jobs.queue.store = None  # persistence off: the same queue, writing nothing
    svc.fleet.update_snapshots([source.collect(time.time())])  # what GET /gpus serves
    return svc


def fill(svc: Any, gpus: int, pending: int) -> None:
    """Every GPU busy with a long job, then ``pending`` more waiting (in the API's batches of 1,000)."""
    for n, prefix in ((gpus, "run"), (pending, "wait")):
        for k in range(0, n, 1000):
            svc.jobs.submit([{"name": f"{prefix}{i}", "gpus": 1, "duration_s": 86400}
                             for i in range(k, min(n, k + 1000))], "admin", None)


def measure(svc: Any, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    wrk = shutil.which("wrk")
    svc.api.start()
    url = svc.api.url
    token = httpx.post(f"{url}/auth/login", json={"username": "admin", "password": PASSWORD}).json()["access_token"]
    stop = threading.Event()
    passes: list[float] = []
    queue_passes: list[float] = []
    queue = svc.jobs.queue
    schedule = queue.schedule

    def timed_schedule(now: float) -> list[str]:  # the queue's own pass, inside each step of the job service
        t = time.perf_counter()
        try:
            return schedule(now)
        finally:
            queue_passes.append(time.perf_counter() - t)

    queue.schedule = timed_schedule

    def cycle() -> None:  # the loop's per-cycle scheduling pass, under the job service's lock
        while not stop.wait(args.cycle):
            t = time.perf_counter()
            svc.jobs.tick(svc.clock())
            passes.append(time.perf_counter() - t)

    th = threading.Thread(target=cycle, name="cycle", daemon=True)
    th.start()
    cmd = [str(wrk), "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
           "-H", f"Authorization: Bearer {token}", f"{url}/gpus?limit={args.limit}"]
    out: dict[str, Any] = {}
    try:
        out["alone"] = parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        sub = subprocess.Popen([sys.executable, __file__, "--submitter", url, token, str(args.rate),
                                str(args.seconds)], stdout=subprocess.PIPE, text=True)
        out["together"] = parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        res = json.loads(sub.communicate(timeout=args.seconds * 10 + 60)[0])
        out["submit"] = res
    finally:
        stop.set()
        th.join(timeout=30)
        svc.api.stop()
    out["pass_ms"] = statistics.median(passes) * 1e3 if passes else float("nan")
    out["queue_pass_ms"] = statistics.median(queue_passes) * 1e3 if queue_passes else float("nan")
    out["jobs"] = svc.jobs.counts()
    return out


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--submitter":
        submitter(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1250, help="twin nodes of 8 GPUs")
    ap.add_argument("--pending", type=int, default=10000, help="jobs waiting on the full cluster")
    ap.add_argument("--seconds", type=int, default=10, help="each wrk run")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections")
    ap.add_argument("--limit", type=int, default=100, help="GET /gpus?limit=")
    ap.add_argument("--rate", type=float, default=20.0, help="job submissions per second")
    ap.add_argument("--cycle", type=float, default=1.0, help="seconds between the service's scheduling passes")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval for the server process (default: Python's, 0.005 s)")
    args = ap.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    gpus = args.nodes * 8
    results: dict[str, dict[str, Any]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="gpufleet-jobs-load-"))
    try:
        for label, persist in (("persistence off", False), ("database", True)):
            svc = build(tmp, args.nodes, persist)
            try:
                t = time.perf_counter()
                fill(svc, gpus, args.pending)
                print(f"{label}: filled {gpus:,} running + {args.pending:,} waiting in "
                      f"{time.perf_counter() - t:.1f} s", flush=True)
                results[label] = measure(svc, args)
            finally:
                svc.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end {load} on {os.cpu_count()} CPUs; GIL switch interval "
          f"{sys.getswitchinterval() * 1e3:g} ms")
    print(f"{gpus:,} GPUs ({args.nodes:,} nodes x 8), {args.pending:,} waiting; wrk 1 thread x "
          f"{args.connections} connections x {args.seconds} s on GET /gpus?limit={args.limit}; "
          f"POST /jobs {args.rate:g}/s, one job each; a scheduling pass every {args.cycle:g} s")
    print(f"{'':40}{'persistence off':>16}{'database':>12}")

    def row(name: str, fmt: str, get: Any) -> None:
        print(f"{name:40}" + "".join(f"{format(get(results[k]), fmt):>{w}}"
                                     for k, w in (("persistence off", 16), ("database", 12))))

    row("GET /gpus alone (req/s)", ".0f", lambda r: r["alone"]["rps"])
    row("GET /gpus with submissions (req/s)", ".0f", lambda r: r["together"]["rps"])
    row("  together / alone", ".0%", lambda r: r["together"]["rps"] / r["alone"]["rps"])
    row("GET /gpus p99 alone / together (ms)", "", lambda r: f"{r['alone']['p99_ms']:.1f}/{r['together']['p99_ms']:.1f}")
    row("submissions (ok / failed)", "", lambda r: f"{len(r['submit']['latency_ms']) - r['submit']['failed']}/"
                                                 f"{r['submit']['failed']}")
    row("submission p50 (ms)", ".1f", lambda r: statistics.median(r["submit"]["latency_ms"]))
    row("submission p99 (ms)", ".1f", lambda r: percentile(r["submit"]["latency_ms"], 0.99))
    row("service step (tick), median (ms)", ".1f", lambda r: r["pass_ms"])
    row("  of which the queue's pass, median (ms)", ".1f", lambda r: r["queue_pass_ms"])
    db = results["database"]
    ratio = db["together"]["rps"] / db["alone"]["rps"]
    p99 = percentile(db["submit"]["latency_ms"], 0.99)
    print(f"targets (database): GET /gpus together >= 80 % of alone: {'met' if ratio >= 0.8 else 'NOT met'} "
          f"({ratio:.0%}); submission p99 <= 20 ms: {'met' if p99 <= 20 else 'NOT met'} ({p99:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
