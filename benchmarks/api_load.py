"""Load on the API with a real HTTP load generator: `GET /gpus` for a 1,000-GPU twin fleet.

Starts the API (uvicorn, one worker, as `gpufleet serve` runs it) on loopback over a FleetState filled
from the digital twin, gets an admin token, and runs Debian's `wrk` against `GET /gpus?limit=100`
and `GET /gpus/{uuid}`. Target: ≥ 1,000 requests/s with p99 ≤ 50 ms on 2 cores. Also runs `GET /healthz`
in the same conditions as the baseline (the framework's floor).

    python benchmarks/api_load.py [--gpus 1000] [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_wrk(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", text)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {p: ms(re.search(rf"\s{p}%\s+(\S+)", out).group(1)) for p in ("50", "99")}  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"], "non2xx": float(errors.group(1)) if errors else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    wrk = shutil.which("wrk")
    if not wrk:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    from gpufleet.simulator.twin import TwinConfig, TwinSource

    from gpufleet.api.app import create_app
    from gpufleet.api.backend import FleetState
    from gpufleet.api.context import build_context, initialise
    from gpufleet.api.server import ApiServer
    from gpufleet.settings import ApiSettings

    tmp = Path(tempfile.mkdtemp(prefix="gpufleet-load-"))
    settings = ApiSettings(password_hash_time_cost=1, password_hash_memory_kib=8192)
    pw = tmp / "pw"
    pw.write_text("benchmark-password-123")
    initialise(settings, tmp / "data", password_file=pw)
    source = TwinSource(TwinConfig(nodes=args.gpus // 8, gpus_per_node=8, seed=1, fields="history"), start=1.7e9)
    fleet = FleetState()
    fleet.update_snapshots([source.collect(time.time())])
    ctx = build_context(settings, tmp / "data", fleet=fleet)
    server = ApiServer(create_app(ctx), "127.0.0.1:0")
    server.start()
    import httpx

    token = httpx.post(f"{server.url}/auth/login", json={"username": "admin", "password": "benchmark-password-123"}).json()["access_token"]
    uuid = fleet.gpus()[0]["uuid"]
    print(f"API on {server.url}; {len(fleet.devices)} GPUs in the twin; wrk {args.connections} connections x {args.seconds} s, 2 threads")
    results = {}
    for name, path, auth in (("GET /healthz (baseline)", "/healthz", False),
                             ("GET /gpus?limit=100", "/gpus?limit=100", True),
                             ("GET /gpus/{uuid}", f"/gpus/{uuid}", True)):
        cmd = [wrk, "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency"]
        if auth:
            cmd += ["-H", f"Authorization: Bearer {token}"]
        out = subprocess.run([*cmd, server.url + path], capture_output=True, text=True, check=True).stdout
        results[name] = r = parse_wrk(out)
        print(f"{name:<28} {r['rps']:>8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  non-2xx {r['non2xx']:.0f}")
    g = results["GET /gpus?limit=100"]
    base = results["GET /healthz (baseline)"]["rps"]
    print(f"GET /gpus: {g['rps'] / base:.2f}x the framework floor's throughput; target >= 1000 req/s "
          f"({'met' if g['rps'] >= 1000 else 'NOT met'}), p99 <= 50 ms ({'met' if g['p99_ms'] <= 50 else 'NOT met'})")
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
