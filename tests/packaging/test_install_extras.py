"""The base install is the node exporter: its requirement list leaves the heavy libraries to extras, and with
those libraries absent the exporter's commands work and the others name the extra to install in one line.

The absent libraries are simulated in a subprocess by a meta-path finder that refuses to import them, as
they would be refused on a base install (benchmarks/install_size.py measures a real one)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
HEAVY = {"torch", "pandas", "scikit-learn", "statsmodels", "fastapi", "sqlalchemy", "scipy", "matplotlib",
         "pyarrow", "duckdb", "numpy", "uvicorn", "kubernetes", "amdsmi", "grpcio", "protobuf", "celery", "redis",
         "alembic"}
# import names of everything the base install leaves out
NOT_IN_BASE = ("torch,pandas,sklearn,statsmodels,scipy,matplotlib,fastapi,starlette,uvicorn,sqlalchemy,numpy,"
               "pyarrow,httpx,jinja2,apprise,grafanalib,kubernetes,amdsmi,duckdb,psycopg,alembic,celery,redis,jwt,grpc,google,"
               "threadpoolctl")

BLOCKER = """
import importlib.abc, sys
BLOCK = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
from gpufleet.cli import main
main(sys.argv[2:])
"""


def _name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()


def _extra(name: str) -> set[str]:
    """Requirement names of an extra, following gpufleet[...] self-references."""
    out: set[str] = set()
    for req in PROJECT["optional-dependencies"][name]:
        if _name(req) == "gpufleet":
            for sub in req[req.index("[") + 1:req.index("]")].split(","):
                out |= _extra(sub.strip())
        else:
            out.add(_name(req))
    return out


def test_base_requirements_leave_the_heavy_libraries_to_extras() -> None:
    base = {_name(r) for r in PROJECT["dependencies"]}
    assert base & HEAVY == set()
    assert {"prometheus-client", "nvidia-ml-py", "pydantic-settings", "typer"} <= base
    extras = PROJECT["optional-dependencies"]
    assert {"service", "analytics", "amd", "kubernetes", "postgres", "all", "test"} <= set(extras)
    assert {"torch", "pandas", "scikit-learn", "statsmodels"} <= _extra("analytics")
    assert {"fastapi", "sqlalchemy", "uvicorn", "alembic", "celery", "redis"} <= _extra("service")
    everything = _extra("all")
    for name in ("service", "analytics", "amd", "kubernetes", "postgres"):
        assert _extra(name) <= everything, name
    assert everything <= _extra("test") and "pytest" in _extra("test")
    # duckdb is a benchmark's, not a runtime dependency
    assert "duckdb" not in everything and "duckdb" in _extra("bench")
    # amdsmi pinned to the tested binding (7.0.x): an upper bound, not just a floor
    (amd,) = PROJECT["optional-dependencies"]["amd"]
    assert re.fullmatch(r"amdsmi>=7\.0,<7\.1", amd.replace(" ", ""))


def _run(*args: str, block: str = NOT_IN_BASE, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER, block, *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.mark.parametrize("command", [("exporter", "--help"), ("devices", "--help"), ("serve", "--help")])
def test_exporter_commands_work_without_the_extras(command: tuple[str, ...]) -> None:
    out = _run(*command)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Usage" in out.stdout


def test_base_install_exporter_reports_no_gpu_not_a_missing_library(tmp_path: Path) -> None:
    out = _run("devices", "--source", "nvml", cwd=tmp_path)
    assert out.returncode == 4, out.stderr
    assert "NVIDIA" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("command", "extra"), [
    (("failure", "evaluate", "--dataset", "titan"), "analytics"),
    (("history", "info", "--store", "{tmp}"), "store"),
    (("exporter", "--source", "twin"), "twin"),
    (("dashboards", "build", "--out", "{tmp}/d"), "service"),
])
def test_a_command_whose_extra_is_missing_names_it_in_one_line(command: tuple[str, ...], extra: str,
                                                               tmp_path: Path) -> None:
    out = _run(*(c.format(tmp=tmp_path) for c in command), cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]  # ConfigError's exit code
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"pip install 'gpufleet[{extra}]'" in lines[0]


def test_a_missing_module_no_extra_provides_still_raises(tmp_path: Path) -> None:
    """Only the extras' libraries are translated: a broken install of a base library is not hidden."""
    out = _run("exporter", "--help", block="typer", cwd=tmp_path)
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr


@pytest.mark.parametrize(("module", "extra"), [("grpc", "kubernetes"), ("google", "kubernetes"), ("amdsmi", "amd"),
                                               ("psycopg", "postgres"), ("celery", "service"), ("torch", "analytics"),
                                               ("numpy", "twin")])
def test_each_extras_library_maps_to_the_extra_that_installs_it(module: str, extra: str) -> None:
    """The table in gpufleet/extras.py agrees with pyproject.toml: the extra it names installs the library."""
    from gpufleet.extras import missing_extra

    err = missing_extra(ModuleNotFoundError(f"No module named {module!r}", name=module))
    assert err is not None and err.extra == extra
    dist = {"grpc": "grpcio", "google": "protobuf"}.get(module, module)
    assert dist in _extra(extra)
    assert missing_extra(ModuleNotFoundError("No module named 'nope'", name="nope")) is None
