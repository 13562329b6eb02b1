"""A real Prometheus scrapes three exporters (native, dcgm, both naming) at 1 s; /api/v1/query returns
every catalogue metric the fleet supports, with the right labels, in each mode."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from exporter.catalogue import DCGM_IDENTITY_LABELS, NATIVE_IDENTITY_LABELS
from tests.exporter.harness import run_exporter
from tests.exporter.synthetic import SyntheticSource, exporter_metrics
from tests.servers import Prometheus, wait_until

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _expected(mode: str) -> dict[str, set[str]]:
    """Exposition name -> its own labels, for what the synthetic fleet supports in a naming mode."""
    out: dict[str, set[str]] = {}
    for m in exporter_metrics():
        if mode in ("native", "both"):
            out[m.name] = set(m.labels)
        if mode in ("dcgm", "both") and m.dcgm_name:
            out[m.dcgm_name] = set(m.labels) - set(m.dcgm_sum_labels)
    return out


def test_prometheus_scrapes_every_metric_with_its_labels(tmp_path: Path) -> None:
    modes = ("native", "dcgm", "both")
    with ExitStack() as stack:
        exps = {mode: stack.enter_context(run_exporter(SyntheticSource(2, node=f"node-{mode}"), names=mode,
                                                      interval=1.0)) for mode in modes}
        prom = Prometheus(tmp_path / "prom", [e.host_port for e in exps.values()], interval="1s")
        stack.callback(prom.stop)
        for mode, exp in exps.items():
            expected = _expected(mode)
            series: list[dict] = []  # type: ignore[type-arg]

            def scraped(exp=exp, expected=expected) -> bool:  # type: ignore[no-untyped-def]
                nonlocal series
                series = prom.query(f'{{instance="{exp.host_port}",__name__!~"up|scrape_.*"}}')
                return set(expected) <= {s["metric"]["__name__"] for s in series}

            wait_until(scraped, 60, f"every {mode} metric in Prometheus", interval=0.5)
            identity = DCGM_IDENTITY_LABELS if mode == "dcgm" else NATIVE_IDENTITY_LABELS
            for s in series:
                labels = s["metric"]
                name = labels["__name__"]
                if name not in expected:
                    assert name.startswith("gpufleet_collector_") or name == "gpufleet_snapshot_age_seconds"
                    continue
                ident = DCGM_IDENTITY_LABELS if name.startswith("DCGM_") else NATIVE_IDENTITY_LABELS
                if mode == "dcgm":
                    assert ident == identity
                assert set(ident) <= set(labels), (name, labels)
                if not (name == "gpufleet_gpu_info" and "parent_uuid" in labels):  # MIG: versions unknown
                    assert expected[name] <= set(labels), (name, labels)
                if name in ("gpufleet_gpu_nvlink_crc_flit_errors_total", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"):
                    assert ("link" in labels) == name.startswith("gpufleet_")
                node_label = "Hostname" if name.startswith("DCGM_") else "node"
                assert labels[node_label] == f"node-{mode}"
            if mode != "native":
                mig = [s["metric"] for s in series if s["metric"]["__name__"] == "DCGM_FI_DEV_FB_USED"
                       and "GPU_I_ID" in s["metric"]]
                assert {m["GPU_I_ID"] for m in mig} == {"1", "2"}
