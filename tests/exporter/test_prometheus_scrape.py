"""A real Prometheus scrapes three exporters (native, dcgm, both naming) at 1 s; /api/v1/query returns
every catalogue metric the fleet supports, with the right labels, in each mode."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
from gpufleet.exporter.catalogue import DCGM_IDENTITY_LABELS, NATIVE_IDENTITY_LABELS
from gpufleet.exporter.sources.base import Source

from tests.exporter.harness import RunningExporter, run_exporter
from tests.exporter.synthetic import SyntheticSource, exporter_metrics
from tests.servers import Prometheus, wait_until

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _expected(mode: str, fields: set[str] | None = None) -> dict[str, set[str]]:
    """Exposition name -> its own labels, for the fields a fleet supports (None: every exporter field)."""
    out: dict[str, set[str]] = {}
    for m in exporter_metrics():
        if fields is not None and m.field not in fields:
            continue
        if mode in ("native", "both"):
            out[m.name] = set(m.labels)
        if mode in ("dcgm", "both") and m.dcgm_name:
            out[m.dcgm_name] = set(m.labels) - set(m.dcgm_sum_labels)
    return out


def _nvml_source(tmp: Path, node: str) -> Source:
    """The scripted fake NVML fleet: Hopper with GPM and a process, Ampere with MIG, a T4."""
    from gpufleet.exporter.sources.nvml import NvmlSource

    from tests.exporter.fake_pynvml import GIB, FakeGpu, FakeMig, FakeNvml
    from tests.exporter.test_procattr import make_proc

    proc = tmp / f"proc-{node}"
    make_proc(proc, 4242, "0::/kubepods.slice/kubepods-pod0f3c2a1e_1111_2222_3333_444455556666.slice/"
                          "cri-containerd-" + "a" * 64 + ".scope\n")
    fake = FakeNvml([
        FakeGpu("GPU-h100", "NVIDIA H100 80GB HBM3", processes=[(4242, GIB)], process_util=[(4242, 5, 40, 20)]),
        FakeGpu("GPU-a100", "NVIDIA A100-SXM4-40GB", mig=[
            FakeMig("MIG-1", gi=1, ci=0, profile="3g.20gb", memory=20 * GIB),
            FakeMig("MIG-2", gi=2, ci=0, profile="1g.5gb", memory=5 * GIB)]),
        FakeGpu("GPU-t4", "Tesla T4"),
    ])
    fake.xid("GPU-h100", 79)
    return NvmlSource(nvml=fake.module, node=node, proc_root=proc, xid_wait_ms=20)


def _supported(exp: RunningExporter) -> set[str]:
    snap = exp.loop.latest()
    assert snap is not None
    return {s.field for s in snap.samples} | {"up", "info"}


@pytest.mark.parametrize("fleet", ["synthetic", "fake_nvml"])
def test_prometheus_scrapes_every_metric_with_its_labels(tmp_path: Path, fleet: str) -> None:
    modes = ("native", "dcgm", "both")
    with ExitStack() as stack:
        exps: dict[str, RunningExporter] = {}
        for mode in modes:
            node = f"node-{mode}"
            src = SyntheticSource(2, node=node) if fleet == "synthetic" else _nvml_source(tmp_path, node)
            exps[mode] = stack.enter_context(run_exporter(src, names=mode, interval=1.0))
        prom = Prometheus(tmp_path / "prom", [e.host_port for e in exps.values()], interval="1s")
        stack.callback(prom.stop)
        for mode, exp in exps.items():
            expected: dict[str, set[str]] = {}
            series: list[dict] = []  # type: ignore[type-arg]

            def scraped(exp: RunningExporter = exp, mode: str = mode) -> bool:
                nonlocal series, expected
                expected = _expected(mode, None if fleet == "synthetic" else _supported(exp))
                series = prom.query(f'{{instance="{exp.host_port}",__name__!~"up|scrape_.*"}}')
                return set(expected) <= {s["metric"]["__name__"] for s in series}

            wait_until(scraped, 60, f"every {mode} metric in Prometheus", interval=0.5)
            if fleet == "fake_nvml":  # the families the fake fleet is scripted to exercise
                fields = _supported(exp)
                assert {"xid_errors", "prof_sm_active", "process_memory", "mig_mode", "nvlink_up"} <= fields
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
                own = expected[name]
                if (name == "gpufleet_gpu_info" and "parent_uuid" in labels) or (
                        fleet == "fake_nvml" and name.startswith(("gpufleet_process_", "gpufleet_pod_"))):
                    own = set()  # unknown versions, empty pod / namespace fields: absent labels
                assert own <= set(labels), (name, labels)
                if name in ("gpufleet_gpu_nvlink_crc_flit_errors_total", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"):
                    assert ("link" in labels) == name.startswith("gpufleet_")
                node_label = "Hostname" if name.startswith("DCGM_") else "node"
                assert labels[node_label] == f"node-{mode}"
            if mode != "native":
                mig = [s["metric"] for s in series if s["metric"]["__name__"] == "DCGM_FI_DEV_FB_USED"
                       and "GPU_I_ID" in s["metric"]]
                assert {m["GPU_I_ID"] for m in mig} == {"1", "2"}
                assert all("GPU_I_PROFILE" in m for m in mig)
