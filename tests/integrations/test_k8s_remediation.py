"""Kubernetes remediation through the real ``kubernetes`` client against a loopback Node API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpufleet.exporter.errors import BackendUnavailable

from gpufleet.integrations.k8s import BAND_LABEL, HELD_ANNOTATION, TAINT_KEY, KubeNodeManager
from gpufleet.integrations.remediation import Action, RemediationPolicy, Remediator, audit_fields
from tests.integrations.kube_api import KubeAPI, node

GPU = {"nvidia.com/gpu.present": "true"}
NVIDIA_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@pytest.fixture
def api() -> Iterator[KubeAPI]:
    a = KubeAPI([node("g1", GPU, taints=[NVIDIA_TAINT]), node("g2", GPU), node("g3", GPU), node("g4", GPU),
                 node("cpu1")])
    try:
        yield a
    finally:
        a.stop()


def _risk(**by_node: float) -> dict[str, dict[str, float]]:
    return {f"{n}-gpu0": {"24h": r} for n, r in by_node.items()}


def _node_of() -> dict[str, str]:
    return {f"g{i}-gpu0": f"g{i}" for i in range(1, 5)}


def _taints(api: KubeAPI, name: str) -> list[dict[str, str]]:
    return list(api.nodes[name]["spec"].get("taints") or [])


def test_taint_worst_within_limit_keep_other_taints_and_label_bands(api: KubeAPI) -> None:
    audit: list[Action] = []
    rem = Remediator(KubeNodeManager(api.core_v1()), RemediationPolicy(threshold=0.5, resume_below=0.2, max_share=0.25),
                     audit=audit.append, node_of=_node_of)
    acts = rem.step(_risk(g1=0.6, g2=0.9, g3=0.1), now=5.0)
    # 4 GPU nodes, max_share 0.25: one may go, the worst (g2) goes, g1 is refused
    assert [(a.kind, a.node, a.outcome) for a in acts if a.kind != "label"] == [
        ("hold", "g2", "done"), ("skip", "g1", "refused: limit")]
    assert {"key": TAINT_KEY, "value": "high", "effect": "NoSchedule"} in _taints(api, "g2")
    assert api.nodes["g2"]["metadata"]["annotations"][HELD_ANNOTATION].startswith("gpufleet: failure risk 0.90")
    assert _taints(api, "g1") == [NVIDIA_TAINT]
    bands = {n: api.nodes[n]["metadata"]["labels"].get(BAND_LABEL) for n in ("g1", "g2", "g3", "g4")}
    assert bands == {"g1": "high", "g2": "high", "g3": "low", "g4": None}
    assert {ct for _, _, ct, _ in api.patches()} == {"application/merge-patch+json"}
    assert "cpu1" not in {p.rsplit("/", 1)[1] for _, p, _, _ in api.patches()}
    fields = audit_fields(acts[0])
    assert (fields["action"], fields["target"], fields["outcome"]) == ("kubernetes.taint", "node:g2", "done")
    assert len(audit) == len(acts)

    # risk falls: gpufleet's taint and annotation go, the NVIDIA taint it did not set stays
    api.nodes["g2"]["spec"]["taints"].insert(0, NVIDIA_TAINT)
    rem.step(_risk(g1=0.1, g2=0.05, g3=0.1), now=6.0)
    assert _taints(api, "g2") == [NVIDIA_TAINT]
    assert HELD_ANNOTATION not in api.nodes["g2"]["metadata"]["annotations"]
    assert api.nodes["g2"]["metadata"]["labels"][BAND_LABEL] == "low"


def test_cordon_mode_and_operator_cordon_left_alone(api: KubeAPI) -> None:
    api.nodes["g4"]["spec"]["unschedulable"] = True  # an operator's cordon: counts, never undone
    rem = Remediator(KubeNodeManager(api.core_v1(), mode="cordon"), RemediationPolicy(max_share=0.5),
                     node_of=_node_of)
    acts = [a for a in rem.step(_risk(g1=0.8, g3=0.7, g4=0.01), now=1.0) if a.kind != "label"]
    assert [(a.kind, a.node, a.outcome) for a in acts] == [("hold", "g1", "done"), ("skip", "g3", "refused: limit")]
    assert api.nodes["g1"]["spec"]["unschedulable"] is True
    rem.step(_risk(g1=0.0, g3=0.0, g4=0.0), now=2.0)
    assert api.nodes["g1"]["spec"]["unschedulable"] is False
    assert api.nodes["g4"]["spec"]["unschedulable"] is True


def test_dry_run_sends_no_patch(api: KubeAPI) -> None:
    rem = Remediator(KubeNodeManager(api.core_v1()), RemediationPolicy(max_share=1.0, dry_run=True), node_of=_node_of)
    acts = rem.step(_risk(g1=0.99, g2=0.3), now=1.0)
    assert {(a.kind, a.node, a.outcome) for a in acts} >= {("hold", "g1", "dry-run"), ("label", "g2", "dry-run")}
    assert api.patches() == []


def test_api_errors_are_reported(api: KubeAPI) -> None:
    mgr = KubeNodeManager(api.core_v1())
    with pytest.raises(BackendUnavailable, match='404 nodes "nope" not found'):
        mgr.hold("nope", "gpufleet: test", 0.9, "24h")
    api.stop()
    with pytest.raises(BackendUnavailable, match="kubernetes"):
        KubeNodeManager(api.core_v1(), timeout=2.0).managed_nodes()


def test_operator_release_route(api: KubeAPI) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from gpufleet.integrations.remediation_api import PERMISSIONS, remediation_router

    audit: list[Action] = []
    rem = Remediator(KubeNodeManager(api.core_v1()), RemediationPolicy(max_share=1.0), audit=audit.append,
                     node_of=_node_of)
    rem.step(_risk(g1=0.9), now=1.0)
    app = FastAPI()
    app.include_router(remediation_router(lambda: [rem]))
    http = TestClient(app)
    assert http.get("/integrations/remediation").json()["kubernetes"]["held"] == ["g1"]
    r = http.post("/integrations/remediation/kubernetes/nodes/g1/release")
    assert r.status_code == 200 and r.json()["outcome"] == "done"
    assert _taints(api, "g1") == [NVIDIA_TAINT]
    assert audit_fields(audit[-1])["role"] == "operator"
    assert [a for a in rem.step(_risk(g1=0.9), now=2.0) if a.kind != "label"] == []  # the operator's word holds
    routes = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    assert routes == set(PERMISSIONS)
