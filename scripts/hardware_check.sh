#!/usr/bin/env bash
# Check gpufleet's NVML exporter on a real NVIDIA machine, in one call (about 90 seconds).
#
#   scripts/hardware_check.sh [OUT_DIR] [DURATION_S]
#
# Runs from the repository root with the project's virtual environment (.venv) if there is one.
# Writes into OUT_DIR (default hardware-check-<UTC time>):
#   devices.txt / devices.json   `gpufleet devices` (and nvidia-smi -L when present)
#   probe.json                   one in-process NvmlSource with every collector: per-collector
#                                success/duration, fields that came back NotSupported, the XID
#                                event thread alive, samples per family, cycle time
#   exposition.txt               /metrics of `gpufleet exporter --source nvml --names both` after DURATION_S
#   promtool.txt                 `promtool check metrics` on the native part (when promtool exists)
#   resources.csv                the exporter's CPU seconds and RSS every interval (5 s)
#   exporter.log                 the exporter's own output
#   summary.md                   the figures to paste into docs/hardware.md
# Exit status: 0 when every step ran and every check passed, 1 otherwise (the summary says which).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${1:-hardware-check-$(date -u +%Y%m%dT%H%M%SZ)}
DURATION=${2:-60}
INTERVAL=${HWCHECK_INTERVAL:-5}   # collection interval (and CPU/RSS sampling period), seconds
mkdir -p "$OUT"
[ -f .venv/bin/activate ] && . .venv/bin/activate
PY=${PYTHON:-python}
FAIL=0
note() { echo "$*" | tee -a "$OUT/checks.txt"; }
: > "$OUT/checks.txt"

# 1. the inventory -------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null; then nvidia-smi -L > "$OUT/nvidia-smi.txt" 2>&1; fi
if gpufleet devices > "$OUT/devices.txt" 2>&1 && gpufleet devices --json > "$OUT/devices.json" 2>>"$OUT/devices.txt"; then
    note "PASS gpufleet devices: $(grep -c '^GPU ' "$OUT/devices.txt") GPU(s)"
else
    note "FAIL gpufleet devices: $(tail -1 "$OUT/devices.txt")"; FAIL=1
fi

# 2. an in-process probe: every collector, NotSupported fields, the XID thread -----------------
"$PY" - "$OUT/probe.json" "$INTERVAL" <<'PYEOF' > "$OUT/probe.txt" 2>&1
import json, resource, sys, time
from collections import Counter
from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.sources.nvml import NvmlSource

out_path, interval = sys.argv[1], float(sys.argv[2])
src = NvmlSource()
src.open()
try:
    cycles = []
    for i in range(3):
        t0 = time.perf_counter(); c0 = time.process_time()
        snap = src.collect(time.time())
        cycles.append({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                       "samples": len(snap.samples)})
        if i < 2:
            time.sleep(interval)
    xid = src.collector("xid")
    fam = {m.field: m.family for m in catalogue()}
    result = {
        "devices": [{"uuid": d.uuid, "model": d.model, "driver": d.driver_version, "cuda": d.cuda_version,
                     "mig_parent": d.mig_parent_uuid, "mig_profile": d.mig_profile} for d in src.devices()],
        "up": snap.up,
        "collectors": {s.collector: {"success": s.success, "duration_s": s.duration_s, "error": s.error}
                       for s in snap.stats},
        "not_supported": sorted(f"{u} {f} ({why})" for (u, f), why in src.unsupported_fields().items()),
        "missing_functions": sorted(src.query.missing_functions) if src.query else [],
        "xid_thread_alive": bool(xid is not None and getattr(xid, "thread_alive", False)),
        "samples_per_family": dict(Counter(fam.get(s.field, "?") for s in snap.samples)),
        "fields_seen": sorted({s.field for s in snap.samples}),
        "events": [f"{e.kind} {e.uuid} {e.code}" for e in snap.events],
        "cycles": cycles,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
finally:
    src.close()
json.dump(result, open(out_path, "w"), indent=2)
print(json.dumps({k: result[k] for k in ("up", "xid_thread_alive", "cycles")}))
PYEOF
if [ -s "$OUT/probe.json" ]; then
    note "PASS in-process probe ($(tail -1 "$OUT/probe.txt"))"
    if "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d['xid_thread_alive'] else 1)" "$OUT/probe.json"; then
        note "PASS XID event thread alive"
    else
        note "FAIL XID event thread not alive"; FAIL=1
    fi
else
    note "FAIL in-process probe: $(tail -3 "$OUT/probe.txt")"; FAIL=1
fi

# 3. the exporter process for DURATION seconds: exposition, CPU and memory ----------------------
PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
gpufleet exporter --source nvml --listen "127.0.0.1:$PORT" --names both --interval "$INTERVAL" \
    --duration "$((DURATION + 15))" > "$OUT/exporter.log" 2>&1 &
EXP=$!
TICK=$(getconf CLK_TCK)
echo "elapsed_s,cpu_s,rss_kb" > "$OUT/resources.csv"
START=$(date +%s)
while [ $(( $(date +%s) - START )) -lt "$DURATION" ] && kill -0 "$EXP" 2>/dev/null; do
    sleep "$INTERVAL"
    if [ -r "/proc/$EXP/stat" ]; then
        CPU=$(awk -v t="$TICK" '{printf "%.3f", ($14 + $15) / t}' "/proc/$EXP/stat")
        RSS=$(awk '/^VmRSS/ {print $2}' "/proc/$EXP/status")
        echo "$(( $(date +%s) - START )),$CPU,$RSS" >> "$OUT/resources.csv"
    fi
done
if "$PY" -c "import sys,urllib.request; open(sys.argv[2],'wb').write(urllib.request.urlopen(sys.argv[1], timeout=10).read())" \
        "http://127.0.0.1:$PORT/metrics" "$OUT/exposition.txt" 2>>"$OUT/exporter.log"; then
    note "PASS /metrics served $(grep -vc '^#' "$OUT/exposition.txt") samples"
    grep -q '^gpufleet_gpu_up{.*} 1' "$OUT/exposition.txt" || { note "FAIL no gpufleet_gpu_up 1 series"; FAIL=1; }
    if grep -q 'gpufleet_collector_success{collector="xid"} 1' "$OUT/exposition.txt"; then
        note "PASS exporter reports the XID collector (thread) healthy"
    else
        note "FAIL gpufleet_collector_success{collector=\"xid\"} is not 1"; FAIL=1
    fi
    if command -v promtool >/dev/null; then
        grep -v '^DCGM_\|^# \(HELP\|TYPE\) DCGM_' "$OUT/exposition.txt" | promtool check metrics > "$OUT/promtool.txt" 2>&1
        if [ -s "$OUT/promtool.txt" ]; then note "WARN promtool: $(head -3 "$OUT/promtool.txt" | tr '\n' ' ')"; else note "PASS promtool check metrics (native)"; fi
    fi
else
    note "FAIL could not scrape /metrics (see exporter.log)"; FAIL=1
fi
kill "$EXP" 2>/dev/null; wait "$EXP" 2>/dev/null

# 4. the summary -------------------------------------------------------------------------------
"$PY" - "$OUT" "$DURATION" "$INTERVAL" <<'PYEOF' > "$OUT/summary.md"
import csv, json, os, sys
out, duration, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
probe = json.load(open(f"{out}/probe.json")) if os.path.exists(f"{out}/probe.json") else {}
rows = list(csv.DictReader(open(f"{out}/resources.csv")))
devs = probe.get("devices", [])
phys = [d for d in devs if not d.get("mig_parent")]
from collections import Counter
models = ", ".join(f"{m} x{n}" for m, n in Counter(d["model"] for d in phys).items()) or "no GPU found"
print(f"### {models}; driver {phys[0]['driver'] if phys else '?'}, CUDA {phys[0]['cuda'] if phys else '?'}\n")
print("Checks:\n")
print("".join(f"- {line}" for line in open(f"{out}/checks.txt")))
if len(rows) >= 2:
    a, b = rows[0], rows[-1]
    span = float(b["elapsed_s"]) - float(a["elapsed_s"])
    cpu = (float(b["cpu_s"]) - float(a["cpu_s"])) / span * 100 if span > 0 else float("nan")
    rss = max(int(r["rss_kb"]) for r in rows) / 1024
    print(f"\nExporter at a {interval:g} s interval over {span:.0f} s: {cpu:.2f} % of one core, peak RSS {rss:.1f} MB.")
cyc = probe.get("cycles", [])
if cyc:
    print(f"In-process collection cycle (all collectors, {len(phys)} GPU(s)): "
          + ", ".join(f"{c['wall_s'] * 1000:.1f} ms wall / {c['cpu_s'] * 1000:.1f} ms CPU" for c in cyc))
print("\nCollectors:\n")
for name, c in probe.get("collectors", {}).items():
    print(f"- {name}: {'ok' if c['success'] else 'FAILED ' + str(c['error'])} ({c['duration_s'] * 1000:.1f} ms)")
print("\nNotSupported / unavailable fields:\n")
print("\n".join(f"- {x}" for x in probe.get("not_supported", [])) or "- none")
if probe.get("missing_functions"):
    print("\nFunctions missing from this driver: " + ", ".join(probe["missing_functions"]))
print("\nSamples per family: " + json.dumps(probe.get("samples_per_family", {}), sort_keys=True))
PYEOF
cat "$OUT/summary.md"
echo
echo "hardware check written to $OUT (paste summary.md into docs/hardware.md)"
exit $FAIL
