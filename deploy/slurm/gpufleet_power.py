#!/usr/bin/env python3
"""Slurm ResumeProgram / SuspendProgram that asks gpufleet before powering nodes up or down.

    ResumeProgram=/usr/local/lib/gpufleet/slurm-resume     (runs: gpufleet_power.py resume <hostlist>)
    SuspendProgram=/usr/local/lib/gpufleet/slurm-suspend   (runs: gpufleet_power.py suspend <hostlist>)

Settings (environment, or KEY=VALUE lines in /etc/gpufleet/slurm-power.env or $GPUFLEET_POWER_ENV):
  GPUFLEET_URL            the service, e.g. https://gpufleet.example:8000 (required for advice)
  GPUFLEET_TOKEN_FILE     file holding a bearer token (a role allowed POST /integrations/slurm/power)
  GPUFLEET_POWER_UP_CMD   command run per approved node on resume; {node} is replaced (required)
  GPUFLEET_POWER_DOWN_CMD command run per approved node on suspend; {node} is replaced (required)
  GPUFLEET_TIMEOUT        seconds for the service call (default 5)

The service answers {"approve": [...], "deny": {node: why}}. Only approved nodes are powered; denied ones
are left as they are and logged. If the service cannot be reached or answers badly, every node Slurm
named is acted on (Slurm's own decision stands: gpufleet being down never blocks capacity). Standard
library only; messages go to stderr (slurmctld logs them). Exit status: 0, or 1 if a power command failed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request


def log(msg: str) -> None:
    print(f"gpufleet-power: {msg}", file=sys.stderr, flush=True)


def load_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("GPUFLEET_POWER_ENV", "/etc/gpufleet/slurm-power.env")
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    env.setdefault(k.strip(), v.strip().strip('"'))
    except OSError:
        pass
    return env


def expand(hostlist: str) -> list[str]:
    """Host names: ``scontrol show hostnames`` when it works, else the same expansion done here."""
    try:
        p = subprocess.run(["scontrol", "show", "hostnames", hostlist], capture_output=True, text=True,
                           timeout=10, check=False)
        if p.returncode == 0 and p.stdout.strip():
            return p.stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return expand_local(hostlist)


def expand_local(hostlist: str) -> list[str]:
    out: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", hostlist):
        m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not m:
            out.append(part)
            continue
        for piece in m.group(2).split(","):
            lo, _, hi = piece.partition("-")
            for k in range(int(lo), int(hi or lo) + 1):
                out.extend(expand_local(f"{m.group(1)}{k:0{len(lo)}d}{m.group(3)}"))
    return out


def ask(env: dict[str, str], action: str, nodes: list[str]) -> tuple[list[str], dict[str, str]]:
    url = env.get("GPUFLEET_URL", "").rstrip("/")
    if not url:
        log("GPUFLEET_URL is not set: acting on every node Slurm named")
        return nodes, {}
    headers = {"Content-Type": "application/json"}
    token_file = env.get("GPUFLEET_TOKEN_FILE")
    try:
        if token_file:
            with open(token_file, encoding="utf-8") as f:
                headers["Authorization"] = f"Bearer {f.read().strip()}"
        req = urllib.request.Request(f"{url}/integrations/slurm/power", method="POST", headers=headers,
                                     data=json.dumps({"action": action, "nodes": nodes}).encode())
        with urllib.request.urlopen(req, timeout=float(env.get("GPUFLEET_TIMEOUT", "5"))) as r:
            doc = json.loads(r.read())
        approve = [n for n in doc["approve"] if n in nodes]
        deny = {str(k): str(v) for k, v in (doc.get("deny") or {}).items()}
        return approve, deny
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
        log(f"no advice from {url} ({exc}): acting on every node Slurm named")
        return nodes, {}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("resume", "suspend"):
        log("usage: gpufleet_power.py resume|suspend <hostlist>")
        return 2
    action, env = argv[1], load_env()
    cmd = env.get("GPUFLEET_POWER_UP_CMD" if action == "resume" else "GPUFLEET_POWER_DOWN_CMD", "")
    if not cmd:
        log(f"no power command for {action} (GPUFLEET_POWER_{'UP' if action == 'resume' else 'DOWN'}_CMD)")
        return 2
    nodes = expand(argv[2])
    approve, deny = ask(env, action, nodes)
    for node, why in deny.items():
        log(f"{action} {node}: denied by gpufleet: {why}")
    rc = 0
    for node in approve:
        args = [a.replace("{node}", node) for a in shlex.split(cmd)]
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
            ok, detail = p.returncode == 0, (p.stderr.strip() or p.stdout.strip())
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, detail = False, str(exc)
        log(f"{action} {node}: {'ok' if ok else 'FAILED'}{': ' + detail if detail and not ok else ''}")
        rc = rc or (0 if ok else 1)
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
