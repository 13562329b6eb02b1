#!/usr/bin/env bash
# Create .venv and install gpufleet with its test extras. torch goes first: `pip install torch==2.13.0`
# takes the CPU wheel; a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
