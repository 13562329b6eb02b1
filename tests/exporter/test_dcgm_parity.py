"""dcgm mode matches dcgm-exporter's default counters (../shared/reference/dcgm-exporter_default-counters.csv):
every counter it lists is a catalogue dcgm name, the DCGM_FI_DRIVER_VERSION label is on every device series,
and DCGM_FI_PROF_PCIE_TX_BYTES / RX_BYTES come through GPM on a GPU that has it (the fake pynvml's H100)."""

from __future__ import annotations

import csv
import re

import pytest
from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.loop import CollectionLoop
from gpufleet.exporter.sinks.prometheus import PrometheusSink
from gpufleet.exporter.sources.nvml import NvmlSource

from tests.exporter.fake_pynvml import FakeGpu, FakeNvml
from tests.servers import ROOT, skip_or_fail

REFERENCE = ROOT.parent / "shared" / "reference" / "dcgm-exporter_default-counters.csv"
_SERIES = re.compile(r"^(DCGM_FI_\w+)\{(.*)\} (\S+)$")


def _reference() -> list[tuple[str, str]]:
    if not REFERENCE.exists():
        skip_or_fail(f"dcgm-exporter's default counters {REFERENCE} are not present")
    rows = [r for r in csv.reader(REFERENCE.read_text().splitlines()) if r and not r[0].lstrip().startswith("#")]
    return [(r[0].strip(), r[1].strip()) for r in rows]


def test_every_default_counter_is_in_the_catalogue() -> None:
    dcgm_names = {m.dcgm_name for m in catalogue().metrics if m.dcgm_name}
    counters = [name for name, kind in _reference() if kind != "label"]
    assert len(counters) > 20
    assert [n for n in counters if n not in dcgm_names] == []
    assert ("DCGM_FI_DRIVER_VERSION", "label") in _reference()


def _dcgm_text() -> str:
    fake = FakeNvml([FakeGpu("GPU-h100", "NVIDIA H100 80GB HBM3"), FakeGpu("GPU-t4", "Tesla T4")])
    source = NvmlSource(nvml=fake.module, node="node-a", xid_wait_ms=20)
    source.open()
    try:
        loop = CollectionLoop(source, interval=10)
        sink = PrometheusSink(loop, names="dcgm")
        loop.collect_once(now=1.0)
        loop.collect_once(now=11.0)  # GPM rates need two samples
        return sink.render(now=11.0).decode()
    finally:
        source.close()


def test_driver_version_label_and_pcie_bytes_through_gpm() -> None:
    text = _dcgm_text()
    series = [(m[1], dict(re.findall(r'(\w+)="([^"]*)"', m[2])), float(m[3]))
              for m in map(_SERIES.match, text.splitlines()) if m]
    assert len(series) > 40
    driver = {labels.get("DCGM_FI_DRIVER_VERSION") for _, labels, _ in series}
    assert len(driver) == 1 and None not in driver and next(iter(driver))  # on every series, one version
    tx = {labels["UUID"]: v for name, labels, v in series if name == "DCGM_FI_PROF_PCIE_TX_BYTES"}
    rx = {labels["UUID"]: v for name, labels, v in series if name == "DCGM_FI_PROF_PCIE_RX_BYTES"}
    assert tx == {"GPU-h100": pytest.approx(100 * 2**20)}  # bytes per second, as dcgm-exporter reports
    assert set(rx) == {"GPU-h100"} and rx["GPU-h100"] > 0
    # a GPU without GPM has no such series (absent, never zero)
    assert "GPU-t4" not in tx
