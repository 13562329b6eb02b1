#!/usr/bin/env bash
# Create .venv and install gpufleet with its test extras. torch goes first: `pip install torch==2.13.0`
# takes the CPU wheel; a bare `torch` requirement would pull a multi-GB CUDA build.
#   --servers   also install the Debian packages of the real servers the tests run (Prometheus,
#               Alertmanager, VictoriaMetrics, PostgreSQL, Slurm, Chromium, wrk, kubectl for
#               `kubectl kustomize`); needs root or sudo. Debian has no `kubectl` package: its kubectl is
#               in `kubernetes-client`, installed unless a kubectl is already on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--servers" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager victoria-metrics postgresql redis-server \
    slurmctld slurmd slurm-client chromium chromium-driver wrk openssl python3-venv >/dev/null
  command -v kubectl >/dev/null 2>&1 || $SUDO apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[all,test]"
