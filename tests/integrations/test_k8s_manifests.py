"""deploy/kubernetes validated offline against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
unknown fields are errors), and checked for consistency with the code (taint key, ports, routes, RBAC)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.integrations.k8s import BAND_LABEL, TAINT_KEY
from gpufleet.integrations.k8s_extender import PERMISSIONS
from tests.servers import ROOT, skip_or_fail

try:
    import kubernetes_validate as kv
except ImportError:  # a test extra: skipped on a bare checkout, a failure under CI=true
    kv = None


@pytest.fixture(autouse=True)
def _validator() -> None:
    if kv is None:
        skip_or_fail("kubernetes-validate is not installed (pip install -e '.[test]')")
DIR = ROOT / "deploy" / "kubernetes"
CORE_GROUPS = ("v1", "apps/v1", "rbac.authorization.k8s.io/v1")


def _docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in sorted(DIR.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def _find(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in _docs() if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("version", ["1.29.0", kv.latest_version() if kv else "latest"])
def test_core_objects_pass_the_openapi_schema(version: str) -> None:
    checked = 0
    for _path, doc in _docs():
        if doc["apiVersion"] in CORE_GROUPS:
            kv.validate(doc, version, strict=True)  # raises ValidationError with the path on a bad field
            checked += 1
    assert checked >= 12
    kinds = {d["kind"] for _, d in _docs()}
    assert {"DaemonSet", "Deployment", "Service", "ServiceMonitor", "ClusterRole", "ClusterRoleBinding"} <= kinds
    broken = copy.deepcopy(_find("DaemonSet", "gpufleet-exporter"))
    broken["spec"]["template"]["spec"]["hostPid"] = True  # a typo the schema must catch
    with pytest.raises(kv.ValidationError, match="hostPid"):
        kv.validate(broken, version, strict=True)


def test_kustomization_lists_every_manifest_but_the_scheduler_config() -> None:
    kust = yaml.safe_load((DIR / "kustomization.yaml").read_text())
    assert set(kust["resources"]) == {p.name for p in DIR.glob("*.yaml")} - {"kustomization.yaml",
                                                                            "scheduler-extender.yaml"}


def test_daemonset_runs_where_gpufleet_and_nvidia_taint() -> None:
    spec = _find("DaemonSet", "gpufleet-exporter")["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and spec["runtimeClassName"] == "nvidia"
    keys = {t["key"] for t in spec["tolerations"]}
    assert {TAINT_KEY, "nvidia.com/gpu"} <= keys
    res = spec["containers"][0]["resources"]
    # docs/exporter.md: 32 MB peak RSS and < 0.25 % of a core with 8 GPUs; limits leave headroom
    assert res["limits"]["memory"] == "128Mi" and res["requests"]["cpu"] == "10m"


def test_service_monitors_select_services_and_named_ports() -> None:
    services = {d["metadata"]["name"]: d for _, d in _docs() if d["kind"] == "Service"}
    for _, sm in ((p, d) for p, d in _docs() if d["kind"] == "ServiceMonitor"):
        want = sm["spec"]["selector"]["matchLabels"]
        matched = [s for s in services.values() if want.items() <= s["metadata"]["labels"].items()]
        assert len(matched) == 1, sm["metadata"]["name"]
        ports = {p["name"] for p in matched[0]["spec"]["ports"]}
        assert {e["port"] for e in sm["spec"]["endpoints"]} <= ports


def test_rbac_allows_what_remediation_does() -> None:
    rules = _find("ClusterRole", "gpufleet")["rules"]
    node_verbs = {v for r in rules if "nodes" in r["resources"] for v in r["verbs"]}
    assert {"get", "list", "patch"} <= node_verbs
    binding = _find("ClusterRoleBinding", "gpufleet")
    assert binding["subjects"][0]["name"] == _find("Deployment", "gpufleet")["spec"]["template"]["spec"][
        "serviceAccountName"]
    assert BAND_LABEL.startswith("gpufleet.io/")


def test_scheduler_config_points_at_the_extender_routes() -> None:
    cm = _find("ConfigMap", "gpufleet-scheduler-config")
    cfg = yaml.safe_load(cm["data"]["scheduler-config.yaml"])
    assert cfg["kind"] == "KubeSchedulerConfiguration"
    [ext] = cfg["extenders"]
    prefix = "/" + ext["urlPrefix"].split("/", 3)[3]
    assert {("POST", f"{prefix}/{ext['filterVerb']}"), ("POST", f"{prefix}/{ext['prioritizeVerb']}")} == set(PERMISSIONS)
    assert ext["nodeCacheCapable"] is False and ext["weight"] > 0
