"""The kube-scheduler extender with request / response bodies shaped as Kubernetes documents them
(k8s.io/kube-scheduler/extender/v1: ExtenderArgs, ExtenderFilterResult, HostPriorityList)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from gpufleet.allocator.state import FULL, ClusterState, Health, NodeSpec, Placement

from gpufleet.integrations.k8s_extender import PERMISSIONS, Extender, create_extender_app
from tests.integrations.kube_api import node


def _state() -> ClusterState:
    isl = [0, 0, 0, 0, 1, 1, 1, 1]
    st = ClusterState.from_specs([NodeSpec(n, 64000, 512 * 1024, 8, "H100", islands=isl) for n in ("g1", "g2", "g3", "g4")])
    st.allocate(Placement(0, (0, 1, 2, 3, 4, 5), FULL), 0, 0)  # g1: 2 GPUs free (island 1)
    st.allocate(Placement(1, (0, 1, 4, 5, 6), FULL), 0, 0)  # g2: 3 free, split over both islands
    st.set_risk({"g3/gpu7": 0.8})  # g3: empty but a free GPU is likely to fail
    st.set_node_health("g4", Health.DRAINING)
    return st


def _pod(gpus: int | None, name: str = "train-0") -> dict[str, Any]:
    res = {"limits": {"nvidia.com/gpu": str(gpus), "cpu": "4", "memory": "32Gi"},
           "requests": {"cpu": "4", "memory": "32Gi"}} if gpus else {"requests": {"cpu": "100m"}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ml", "uid": "4d7c1d1e-0000-4000-8000-000000000001"},
            "spec": {"schedulerName": "default-scheduler",
                     "containers": [{"name": "main", "image": "nvcr.io/nvidia/pytorch:24.01-py3", "resources": res}]}}


def _args(pod: dict[str, Any], names: list[str], cache: bool = False) -> dict[str, Any]:
    if cache:  # nodeCacheCapable: true
        return {"Pod": pod, "NodeNames": names}
    return {"Pod": pod, "Nodes": {"metadata": {}, "items": [node(n) for n in names]}}


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_extender_app(Extender(state=_state, threshold=0.5)))


NAMES = ["g1", "g2", "g3", "g4", "cpu1"]


def test_filter_drops_risky_and_held_nodes_for_gpu_pods(client: TestClient) -> None:
    r = client.post("/scheduler/filter", json=_args(_pod(2), NAMES))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    assert [n["metadata"]["name"] for n in body["Nodes"]["items"]] == ["g1", "g2", "cpu1"]
    assert body["Nodes"]["items"][0]["status"]["allocatable"]["nvidia.com/gpu"] == "8"  # whole objects back
    bad = body["FailedAndUnresolvableNodes"]
    assert set(bad) == {"g3", "g4"}
    assert bad["g3"].startswith("gpufleet: failure risk 0.80 within 24h")
    assert bad["g4"] == "gpufleet: node is draining"
    assert body["Error"] == "" and body["FailedNodes"] == {}


def test_filter_node_names_form_and_cpu_pods_pass(client: TestClient) -> None:
    body = client.post("/scheduler/filter", json=_args(_pod(1), NAMES, cache=True)).json()
    assert body["NodeNames"] == ["g1", "g2", "cpu1"] and body["Nodes"] is None
    body = client.post("/scheduler/filter", json=_args(_pod(None), NAMES, cache=True)).json()
    assert body["NodeNames"] == NAMES and body["FailedAndUnresolvableNodes"] == {}
    # Go decodes field names case-insensitively; so does the extender
    body = client.post("/scheduler/filter", json={"pod": _pod(1), "nodenames": ["g3"]}).json()
    assert body["NodeNames"] == []


def test_prioritize_prefers_packing_and_one_nvlink_island(client: TestClient) -> None:
    r = client.post("/scheduler/prioritize", json=_args(_pod(2), ["g1", "g2", "cpu1"]))
    assert r.status_code == 200
    scores = {h["Host"]: h["Score"] for h in r.json()}
    assert set(scores) == {"g1", "g2", "cpu1"}
    assert all(isinstance(s, int) and 0 <= s <= 10 for s in scores.values())
    # g1's last two GPUs share an island and fill the node; g2 would split its free GPUs
    assert scores["g1"] == 10 and scores["g2"] < scores["g1"]
    assert scores["cpu1"] == 0  # not a node gpufleet knows: neutral
    cpu = client.post("/scheduler/prioritize", json=_args(_pod(None), ["g1", "g2"])).json()
    assert cpu == [{"Host": "g1", "Score": 0}, {"Host": "g2", "Score": 0}]


def test_prioritize_ranks_risk_below_safe_nodes() -> None:
    st = ClusterState.from_specs([NodeSpec(n, 64000, 512 * 1024, 8, "H100") for n in ("a", "b")])
    st.set_risk({"a/gpu0": 0.3})
    ext = Extender(state=lambda: st, threshold=0.5)
    pod = _pod(1)
    pod["metadata"]["annotations"] = {"gpufleet.io/expected-duration-seconds": "86400"}
    scores = {h["Host"]: h["Score"] for h in ext.prioritize(_args(pod, ["a", "b"]))}
    assert scores == {"a": 0, "b": 10}


def test_permission_entries_cover_the_routes() -> None:
    app = create_extender_app(Extender(state=_state))
    routes = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}
    assert routes == set(PERMISSIONS)
