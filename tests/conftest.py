"""Shared pytest fixtures. Server fixtures live in tests/servers.py and start real binaries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import SHARED_DATA, VictoriaMetrics, skip_or_fail


@pytest.fixture
def shared_data() -> Path:
    """../shared/data: skips locally when absent, fails under CI=true."""
    if not SHARED_DATA.exists():
        skip_or_fail(f"{SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(tmp_path / "vm")
    try:
        yield vm
    finally:
        vm.stop()
