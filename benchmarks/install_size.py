"""Installed size of gpufleet's base install (the node exporter) and of each extra.

Builds the project's wheel once, then for each target creates a fresh virtual environment, installs
the wheel (with the extra) through pip from the configured indexes, and sums the bytes of everything
pip put into site-packages (gpufleet and all of its dependencies; pip itself, present in an empty
environment, is subtracted). An extra's figure is what it adds to the base install. torch is installed
from its CPU wheel first for the targets that need it (as scripts/setup.sh does).

    python benchmarks/install_size.py [--extras service,analytics,amd,kubernetes,postgres,all]
                                      [--base-only] [--target-mb 100]

Prints one line per target and exits 1 when the base install is over the target.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
NEEDS_TORCH = {"analytics", "service", "all", "test"}
MB = 1_000_000


def tree_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def site_packages(env: Path) -> Path:
    (sp,) = (env / "lib").glob("python3*/site-packages")
    return sp


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                   check=True)
    (wheel,) = out.glob("gpufleet-*.whl")
    return wheel


def installed_size(wheel: Path, extra: str | None, work: Path) -> tuple[int, list[str]]:
    """Bytes under site-packages that installing ``wheel[extra]`` adds to an empty venv, and the
    distributions installed."""
    env = work / f"venv-{extra or 'base'}"
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    empty = tree_bytes(site_packages(env))
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir"]
    if extra in NEEDS_TORCH:
        subprocess.run([*pip, TORCH], check=True)
    target = f"{wheel}[{extra}]" if extra else str(wheel)
    subprocess.run([*pip, target], check=True)
    dists = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                           check=True, capture_output=True, text=True).stdout.split()
    size = tree_bytes(site_packages(env)) - empty
    return size, dists


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extras", default="service,analytics,amd,kubernetes,postgres,all")
    ap.add_argument("--base-only", action="store_true", help="measure the base install only")
    ap.add_argument("--target-mb", type=float, default=100.0)
    ap.add_argument("--list", action="store_true", help="print the distributions of each install")
    args = ap.parse_args()
    extras = [] if args.base_only else [e for e in args.extras.split(",") if e]
    with tempfile.TemporaryDirectory(prefix="gpufleet-size-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist")
        base, dists = installed_size(wheel, None, work)
        verdict = "ok" if base <= args.target_mb * MB else "OVER"
        print(f"base (node exporter)    {base / MB:8.1f} MB   {len(dists):3d} distributions  "
              f"target <= {args.target_mb:.0f} MB: {verdict}")
        if args.list:
            print("    " + " ".join(dists))
        for extra in extras:
            size, edists = installed_size(wheel, extra, work)
            print(f"[{extra}]{'':<{22 - len(extra)}}{size / MB:8.1f} MB   {len(edists):3d} distributions  "
                  f"(+{(size - base) / MB:.1f} MB over base)")
            if args.list:
                print("    " + " ".join(sorted(set(edists) - set(dists))))
            shutil_rmtree(work / f"venv-{extra}")
    return 0 if verdict == "ok" else 1


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
