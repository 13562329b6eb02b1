"""Kubernetes node remediation with the official ``kubernetes`` client: taint or cordon, risk-band labels.

:class:`KubeNodeManager` is the :class:`~gpufleet.integrations.remediation.NodeManager` for Kubernetes:

* ``mode="taint"`` (default) adds ``gpufleet.io/failure-risk=high:NoSchedule`` to the node (new pods stay
  off unless they tolerate it; running pods stay); ``mode="cordon"`` sets ``spec.unschedulable``.
* either way it records why in the annotation ``gpufleet.io/held`` (the reason) so gpufleet knows which
  holds are its own (an operator's cordon is never undone by gpufleet) and a restart loses nothing.
* :meth:`KubeNodeManager.set_band` labels the node ``gpufleet.io/failure-risk-band=low|medium|high``, so
  workloads can use node affinity on it.

Every API call carries ``_request_timeout``; API and connection errors become
:class:`~exporter.errors.BackendUnavailable` with the API server's message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from gpufleet.exporter.errors import BackendUnavailable, InputError
from gpufleet.integrations.remediation import ManagedNode

TAINT_KEY = "gpufleet.io/failure-risk"
TAINT_VALUE = "high"
TAINT_EFFECT = "NoSchedule"
HELD_ANNOTATION = "gpufleet.io/held"
BAND_LABEL = "gpufleet.io/failure-risk-band"
GPU_RESOURCE = "nvidia.com/gpu"

T = TypeVar("T")


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            doc = json.loads(body)
            if isinstance(doc, dict) and doc.get("message"):
                return f"{getattr(exc, 'status', '')} {doc['message']}".strip()
        except (TypeError, ValueError):
            pass
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if status is not None:
        return f"{status} {reason or ''}".strip()
    return str(exc) or type(exc).__name__


def band_of(risk: float, bands: tuple[tuple[float, str], ...]) -> str:
    """The band a risk falls in: the last ``(floor, name)`` whose floor it reaches (the first band below)."""
    name = bands[0][1]
    for floor, label in bands:
        if risk >= floor:
            name = label
    return name


class KubeNodeManager:
    """Taint / cordon / label GPU nodes through a ``kubernetes.client.CoreV1Api``.

    ``label_selector`` picks the nodes gpufleet manages (default: nodes NVIDIA's GPU feature discovery
    marks as having GPUs); ``timeout`` is seconds per API call.
    """

    name = "kubernetes"

    def __init__(self, api: Any, *, mode: Literal["taint", "cordon"] = "taint",
                 label_selector: str | None = "nvidia.com/gpu.present=true", timeout: float = 10.0) -> None:
        if mode not in ("taint", "cordon"):
            raise InputError(f"unknown Kubernetes remediation mode {mode!r}: use taint or cordon")
        self.api = api
        self.mode = mode
        self.label_selector = label_selector
        self.timeout = timeout

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            raise BackendUnavailable(f"kubernetes: {_message(exc)}") from None
        except (HTTPError, OSError) as exc:
            raise BackendUnavailable(f"kubernetes: {exc}") from None

    def _patch(self, node: str, body: dict[str, Any]) -> None:
        # JSON merge patch (RFC 7386): maps merge, null deletes, lists (taints) are replaced whole. Said
        # explicitly: the client's default for PATCH is json-patch+json, which a dict body does not fit.
        try:
            self._call(self.api.patch_node, node, body, _content_type="application/merge-patch+json")
        except TypeError:  # clients before the v7 generator have no _content_type; they merge dicts already
            self._call(self.api.patch_node, node, body)

    def _nodes(self) -> list[Any]:
        kw = {"label_selector": self.label_selector} if self.label_selector else {}
        return list(self._call(self.api.list_node, **kw).items or [])

    def managed_nodes(self) -> list[ManagedNode]:
        out = []
        for node in self._nodes():
            meta, spec = node.metadata, node.spec
            annotations = meta.annotations or {}
            taints = list(spec.taints or []) if spec else []
            ours = any(t.key == TAINT_KEY for t in taints) or HELD_ANNOTATION in annotations
            cordoned = bool(spec and spec.unschedulable)
            not_ready = any(c.type == "Ready" and c.status != "True"
                            for c in ((node.status.conditions if node.status else None) or []))
            no_schedule = any(t.effect in ("NoSchedule", "NoExecute") and t.key != TAINT_KEY
                              and t.key.startswith("node.kubernetes.io/") for t in taints)
            out.append(ManagedNode(meta.name, held=ours, unavailable=ours or cordoned or not_ready or no_schedule,
                                   uuids=()))
        return out

    def hold(self, node: str, reason: str, risk: float, horizon: str) -> None:
        body: dict[str, Any] = {"metadata": {"annotations": {HELD_ANNOTATION: reason}}}
        if self.mode == "cordon":
            body["spec"] = {"unschedulable": True}
        else:
            current = self._call(self.api.read_node, node)
            taints = [t.to_dict() for t in (current.spec.taints or []) if t.key != TAINT_KEY]
            taints = [{k: v for k, v in t.items() if v is not None} for t in taints]
            taints.append({"key": TAINT_KEY, "value": TAINT_VALUE, "effect": TAINT_EFFECT})
            body["spec"] = {"taints": taints}
        self._patch(node, body)

    def release(self, node: str) -> None:
        current = self._call(self.api.read_node, node)
        body: dict[str, Any] = {"metadata": {"annotations": {HELD_ANNOTATION: None}}}
        taints = list(current.spec.taints or []) if current.spec else []
        if any(t.key == TAINT_KEY for t in taints):
            kept = [{k: v for k, v in t.to_dict().items() if v is not None} for t in taints if t.key != TAINT_KEY]
            body["spec"] = {"taints": kept}
        if self.mode == "cordon":
            body.setdefault("spec", {})["unschedulable"] = False
        self._patch(node, body)

    def bands(self) -> dict[str, str]:
        """The risk-band label of each managed node ("" where none)."""
        return {n.metadata.name: (n.metadata.labels or {}).get(BAND_LABEL, "") for n in self._nodes()}

    def set_band(self, node: str, band: str) -> None:
        self._patch(node, {"metadata": {"labels": {BAND_LABEL: band}}})

    def gpu_allocatable(self) -> dict[str, int]:
        """``nvidia.com/gpu`` allocatable per managed node (the device plugin's count)."""
        out = {}
        for n in self._nodes():
            alloc = (n.status.allocatable if n.status else None) or {}
            out[n.metadata.name] = int(alloc.get(GPU_RESOURCE, 0) or 0)
        return out


GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
"""The device plugins' GPU resources a pod asks for."""
GPU_TYPE_LABELS = ("nvidia.com/gpu.product", "amd.com/gpu.product")
"""Node labels (GPU feature discovery) a pod's nodeSelector names its GPU type with."""
MANAGED_BY = "app.kubernetes.io/managed-by"


def _quantity(v: Any) -> float:
    try:
        return float(str(v))
    except (TypeError, ValueError):
        return 0.0


def _pod_gpus(spec: Any, resources: tuple[str, ...]) -> float:
    """GPUs one pod asks for: its containers' sum, or its largest init container where that is more."""
    def one(c: Any) -> float:
        res = c.resources
        want = {**((res.requests or {}) if res else {}), **((res.limits or {}) if res else {})}
        return sum(_quantity(want.get(r)) for r in resources)
    main = sum(one(c) for c in spec.containers or [])
    init = max((one(c) for c in spec.init_containers or []), default=0.0)
    return max(main, init)


def pending_gpu_demand(api: Any, *, timeout: float = 10.0,
                       resources: tuple[str, ...] = GPU_RESOURCES) -> dict[str, float]:
    """GPUs asked for by pods waiting for a node (phase ``Pending``, not yet bound to one), in every
    namespace, by GPU type (``""`` where the pod names none in its nodeSelector). Pods gpufleet's own
    Kubernetes executor created (``app.kubernetes.io/managed-by=gpufleet``) are left out: they are jobs
    gpufleet's queue already counts. BackendUnavailable when the API server cannot be read."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        pods = api.list_pod_for_all_namespaces(field_selector="status.phase=Pending", _request_timeout=timeout)
    except ApiException as exc:
        raise BackendUnavailable(f"kubernetes: listing pending pods: {_message(exc)}") from None
    except (HTTPError, OSError) as exc:
        raise BackendUnavailable(f"kubernetes: listing pending pods: {exc}") from None
    out: dict[str, float] = {}
    for pod in pods.items or []:
        labels = (pod.metadata.labels if pod.metadata else None) or {}
        spec = pod.spec
        if labels.get(MANAGED_BY) == "gpufleet" or spec is None or spec.node_name:
            continue
        gpus = _pod_gpus(spec, resources)
        if gpus <= 0:
            continue
        selector = spec.node_selector or {}
        kind = next((str(selector[k]) for k in GPU_TYPE_LABELS if selector.get(k)), "")
        out[kind] = out.get(kind, 0.0) + gpus
    return out
