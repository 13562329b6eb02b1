"""Demand from work waiting outside gpufleet's queue (#15 §2): GPUs asked for by pending Slurm jobs (a real
single-host Slurm) and by Kubernetes pods waiting for a node (the loopback API stand-in) join the demand
series the forecaster and the capacity plan read, per GPU type where named, without the jobs gpufleet
itself submitted there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import JobQueue
from gpufleet.allocator.state import ClusterState, NodeSpec
from gpufleet.analytics.forecast import DEMAND_FIELDS, demand_from_history
from gpufleet.analytics.history.store import StoreReader
from gpufleet.exporter.errors import BackendUnavailable
from gpufleet.exporter.schema import Snapshot
from gpufleet.exporter.sinks.store import StoreSink

from gpufleet.api.backend import FleetView
from gpufleet.cluster import ClusterLink
from gpufleet.jobs import QueueJobService
from gpufleet.metrics import ModelStats
from gpufleet.settings import ClusterSettings, load_settings
from gpufleet.tasks import Analytics
from tests.integrations.kube_api import KubeAPI, node
from tests.servers import Slurm, wait_until

HOUR = 3600.0
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def _service_parts(tmp: Path, cluster: ClusterSettings, kube_api: object = None) -> tuple[ClusterLink, Analytics]:
    """The service's cluster link and analytics over a one-node queue of its own: 4 GPUs allocated, 4 queued."""
    st = ClusterState.from_specs([NodeSpec("n0", 8000, 65536, 4, "A100", uuids=[f"g{i}" for i in range(4)])])
    jobs = QueueJobService(JobQueue(st, make_policy("default")))
    jobs.submit([{"name": "fill", "gpus": 4, "duration_s": 86400}, {"name": "own", "gpus": 4, "duration_s": 3600}],
                user="u", team=None)
    view = FleetView()
    link = ClusterLink(cluster, view=view, jobs=jobs, latest=lambda: None, kube_api=kube_api)
    settings = load_settings(None, {"data_dir": str(tmp)})
    analytics = Analytics(settings, models_dir=tmp / "models", store_path=tmp / "history",
                          history=lambda *a: None, latest=lambda: None, clock=lambda: T0, fleet=view, jobs=jobs,
                          stats=ModelStats(), external_demand=link.external_demand)
    return link, analytics


def _demand(tmp: Path, analytics: Analytics, hours: list[float]) -> pd.DataFrame:
    """One cycle's demand samples written at each hour, read back as the forecaster reads them."""
    sink = StoreSink(tmp / "history")
    try:
        for h in hours:
            sink.write(analytics.cycle_samples(Snapshot(ts=T0 + h * HOUR, node="fleet")))
    finally:
        sink.close()
    with StoreReader(tmp / "history") as reader:
        return demand_from_history(reader, pd.Timestamp(T0, unit="s", tz="UTC"),
                                   pd.Timestamp(T0 + 3 * HOUR, unit="s", tz="UTC"), "1h",
                                   fields=(*DEMAND_FIELDS, "external_pending_gpus"))


@pytest.fixture(scope="module")
def slurm() -> Iterator[Slurm]:
    s = Slurm(gpus=4)
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.server
@pytest.mark.slow
def test_pending_slurm_jobs_on_a_full_cluster_raise_the_demand(slurm: Slurm, tmp_path: Path) -> None:
    from gpufleet.integrations.slurm import SlurmClient

    link, analytics = _service_parts(tmp_path, ClusterSettings(slurm_enabled=True, slurm_conf=slurm.conf))
    client = SlurmClient(conf=str(slurm.conf))
    out = f"{slurm.dir}/%j.out"
    try:
        link.poll(0.0)
        assert link.external_demand() == []
        before = analytics.cycle_samples(Snapshot(ts=T0, node="fleet"))
        full = client.submit("sleep 120", gpus_per_node=4, name="fill", output=out)
        wait_until(lambda: any(j.job_id == full and j.running for j in client.jobs()), 20, "the cluster full")
        waiting = client.submit("sleep 10", gpus_per_node=2, name="theirs", output=out)
        ours = client.submit("sleep 10", gpus_per_node=3, name="gpufleet-own", output=out,
                             extra=["--comment=gpufleet:u-own:1"])  # what gpufleet's Slurm executor submits
        jobs = {j.job_id: j for j in client.jobs()}
        assert jobs[waiting].pending and jobs[ours].pending and jobs[ours].from_gpufleet
        assert not jobs[waiting].from_gpufleet
        link.poll(0.0)
        assert link.external_demand() == [("slurm", "", 2.0)]  # gpufleet's own 3 GPUs left out
        text = link.render().decode()
        assert 'gpufleet_external_pending_gpus{source="slurm",gpu_type=""} 2' in text
    finally:
        slurm.clear_queue()
    # the stored demand (what the forecaster and the capacity plan read): gpufleet's own queue (4 allocated,
    # 4 queued), then + 2 pending in Slurm
    assert [s.value for s in before.samples if s.field == "external_pending_gpus"] == []
    analytics_before = analytics.external_demand
    analytics.external_demand = lambda: []
    _demand(tmp_path, analytics, [0.0])
    analytics.external_demand = analytics_before
    frame = _demand(tmp_path, analytics, [1.0])
    assert frame["total"].dropna().tolist() == [8.0, 10.0]
    link.poll(0.0)  # the queue emptied: the demand falls back
    assert link.external_demand() == []


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    api = KubeAPI([node("k0", {"nvidia.com/gpu.present": "true"})])
    try:
        yield api
    finally:
        api.stop()


def test_pending_kubernetes_pods_join_the_demand_per_gpu_type(kube: KubeAPI, tmp_path: Path) -> None:
    kube.add_pod("train", {"nvidia.com/gpu": "4"}, node_selector={"nvidia.com/gpu.product": "H100-SXM5-80GB"})
    kube.add_pod("infer", {"nvidia.com/gpu": "1"}, ns="serving")
    kube.add_pod("rocm", {"amd.com/gpu": "2"}, init_gpus={"amd.com/gpu": "1"})
    kube.add_pod("bound", {"nvidia.com/gpu": "8"}, node_name="k0")  # scheduled, pulling its image: not waiting
    kube.add_pod("running", {"nvidia.com/gpu": "8"}, phase="Running")
    kube.add_pod("cpu-only", {"cpu": "2"})
    kube.add_pod("ours", {"nvidia.com/gpu": "2"}, labels={"app.kubernetes.io/managed-by": "gpufleet"})
    link, analytics = _service_parts(tmp_path, ClusterSettings(kubernetes_enabled=True), kube_api=kube.core_v1())
    assert [t.name for t in link.tasks()] == ["kubernetes_pending"]
    link.poll_kubernetes(0.0)
    assert link.external_demand() == [("kubernetes", "", 3.0), ("kubernetes", "H100-SXM5-80GB", 4.0)]
    samples = {s.labels: s.value for s in analytics.cycle_samples(Snapshot(ts=T0, node="fleet")).samples
               if s.field == "external_pending_gpus"}
    assert samples == {(("gpu_type", ""), ("source", "kubernetes")): 3.0,
                       (("gpu_type", "H100-SXM5-80GB"), ("source", "kubernetes")): 4.0}
    frame = _demand(tmp_path, analytics, [0.0])
    assert frame["total"].dropna().tolist() == [8.0 + 7.0]  # gpufleet's own 8 + 7 pending in Kubernetes


def test_an_unreachable_api_server_keeps_the_last_figure(kube: KubeAPI, tmp_path: Path) -> None:
    from gpufleet.integrations.k8s import pending_gpu_demand

    kube.add_pod("train", {"nvidia.com/gpu": "2"})
    link, _ = _service_parts(tmp_path, ClusterSettings(kubernetes_enabled=True, kubernetes_timeout=2),
                             kube_api=kube.core_v1())
    link.poll_kubernetes(0.0)
    kube.stop()
    with pytest.raises(BackendUnavailable, match="kubernetes: listing pending pods"):
        pending_gpu_demand(link.kube, timeout=2)
    link.poll_kubernetes(0.0)  # logged, not raised
    assert link.external_demand() == [("kubernetes", "", 2.0)]
