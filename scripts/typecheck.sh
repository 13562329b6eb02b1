#!/usr/bin/env bash
# Type-check the installed namespace. mypy does not follow setuptools' editable finder (the repository's
# top-level folders are mapped under `gpufleet`), so this installs a regular copy of the package into
# build/typecheck and checks that tree, with the project's mypy settings.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
rm -rf build/typecheck
python -m pip install -q --no-deps --no-compile --target build/typecheck . 2>&1 | grep -v "^WARNING: Location" || true
[ -f build/typecheck/gpufleet/exporter/py.typed ] || { echo "typecheck: the regular install is missing" >&2; exit 1; }
cd build/typecheck
mypy --config-file ../../pyproject.toml -p gpufleet "$@"
