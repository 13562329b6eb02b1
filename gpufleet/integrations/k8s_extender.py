"""A kube-scheduler extender (filter and prioritize) that scores GPU nodes with gpufleet's placement policy.

kube-scheduler POSTs ``ExtenderArgs`` (``{"Pod": <v1.Pod>, "Nodes": <v1.NodeList>}``, or ``"NodeNames"``
instead of ``"Nodes"`` when the extender is ``nodeCacheCapable``) to ``<urlPrefix>/<filterVerb>`` and
``<urlPrefix>/<prioritizeVerb>``; the answers are an ``ExtenderFilterResult`` (``Nodes`` or ``NodeNames``,
``FailedNodes``, ``FailedAndUnresolvableNodes``, ``Error``) and a ``HostPriorityList``
(``[{"Host": name, "Score": 0..10}]``, 10 = ``MaxExtenderPriority``). Field names are the Go struct
names of ``k8s.io/kube-scheduler/extender/v1`` (Go's JSON decoding ignores case, so lower-case keys
are read too).

Only pods that ask for GPUs (``nvidia.com/gpu`` in a container's limits or requests) are judged:

* **filter** rejects nodes gpufleet holds out (not OK in the :class:`~allocator.state.ClusterState`) or whose
  worst free GPU's failure risk reaches ``threshold``, as unresolvable (preemption cannot fix them); nodes
  gpufleet does not know pass (kube-scheduler has already checked the GPU count);
* **prioritize** scores each node with the placement policy (default: the composite policy: growth of
  fragmentation for the request mix, packing, failure risk × expected run time, load) plus a topology
  term (a multi-GPU pod that fits inside one NVLink island scores better), mapped linearly to 0..10
  (lowest cost 10). Unknown or infeasible nodes score 0. The extender picks the node only: which of the
  node's GPUs the pod gets is the device plugin's choice, so the composite's risk term is taken in its
  ``risk_cost="node_max"`` form (the worst free GPU's risk × expected hours), not in the form that
  assumes gpufleet also picks the GPUs (``"expected"``, the allocator's own default).

Pods without GPUs pass every node and score 0 everywhere (neutral). The expected run time comes from the
pod annotation ``gpufleet.io/expected-duration-seconds`` when present.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.policies.base import Policy, Request
from gpufleet.allocator.state import FULL, ClusterState, Health

MAX_PRIORITY = 10
GPU_RESOURCE = "nvidia.com/gpu"
DURATION_ANNOTATION = "gpufleet.io/expected-duration-seconds"

# routes of the router below, for the lead's permission matrix: kube-scheduler sends no JWT (protect the
# endpoint with the cluster network / TLS to the scheduler instead), so they are public.
PERMISSIONS: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/scheduler/filter"): frozenset(),
    ("POST", "/scheduler/prioritize"): frozenset(),
}


def _get(d: Mapping[str, Any] | None, key: str) -> Any:
    """``d[key]`` with Go's case-insensitive field matching."""
    if not d:
        return None
    if key in d:
        return d[key]
    low = key.lower()
    for k, v in d.items():
        if k.lower() == low:
            return v
    return None


def _quantity(v: Any) -> int:
    """Integer extended-resource quantity (``"2"``, ``2``); anything else counts 0."""
    try:
        return int(str(v))
    except (TypeError, ValueError):
        return 0


def pod_gpus(pod: Mapping[str, Any]) -> int:
    """GPUs a pod asks for: the sum over its containers, or the largest init container's if more."""
    spec = pod.get("spec") or {}

    def one(c: Mapping[str, Any]) -> int:
        res = c.get("resources") or {}
        return max(_quantity((res.get("limits") or {}).get(GPU_RESOURCE)),
                   _quantity((res.get("requests") or {}).get(GPU_RESOURCE)))
    main = sum(one(c) for c in spec.get("containers") or [])
    init = max((one(c) for c in spec.get("initContainers") or []), default=0)
    return max(main, init)


def pod_request(pod: Mapping[str, Any]) -> Request:
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        duration = float(ann[DURATION_ANNOTATION]) if DURATION_ANNOTATION in ann else None
    except ValueError:
        duration = None
    # CPU and memory are kube-scheduler's business; gpufleet judges GPUs only
    return Request(num_gpu=pod_gpus(pod), gpu_milli=FULL, duration_s=duration)


def candidate_names(args: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]] | None]:
    """Node names from ExtenderArgs, and the full Node objects when the scheduler sent them."""
    nodes = _get(args, "Nodes")
    if isinstance(nodes, Mapping):
        items = list(nodes.get("items") or [])
        return [str((n.get("metadata") or {}).get("name")) for n in items], items
    return [str(n) for n in (_get(args, "NodeNames") or [])], None


@dataclass
class Extender:
    """Filter / prioritize over the state ``state()`` returns (built fresh or cached by the caller).

    ``state`` must carry the current GPU allocation, node health and risk (``ClusterState.set_risk``
    with the horizon of ``horizon``), e.g. the service's allocator state or
    :func:`gpufleet.integrations.slurm_mirror.cluster_state` for a Slurm view.
    """

    state: Callable[[], ClusterState]
    policy: Policy = field(default_factory=lambda: make_policy("default", risk_cost="node_max"))
    threshold: float = 0.5
    horizon: str = "24h"
    topology_weight: float = 500.0

    # ------------------------------------------------------------------ filter
    def filter(self, args: Mapping[str, Any]) -> dict[str, Any]:
        names, items = candidate_names(args)
        pod = _get(args, "Pod") or {}
        failed: dict[str, str] = {}
        if pod_gpus(pod) > 0:
            st = self.state()
            for name in names:
                why = self._reject(st, name)
                if why:
                    failed[name] = why
        keep = [n for n in names if n not in failed]
        result: dict[str, Any] = {"FailedNodes": {}, "FailedAndUnresolvableNodes": failed, "Error": ""}
        if items is not None:
            kept = set(keep)
            result["Nodes"] = {"metadata": {}, "items": [n for n in items if n["metadata"]["name"] in kept]}
            result["NodeNames"] = None
        else:
            result["Nodes"] = None
            result["NodeNames"] = keep
        return result

    def _reject(self, st: ClusterState, name: str) -> str:
        try:
            i = st.node_index(name)
        except Exception:
            return ""
        if st.node_health[i] != Health.OK:
            return f"gpufleet: node is {Health(int(st.node_health[i])).name.lower()}"
        ok = st.gpu_present[i] & (st.gpu_health[i] == Health.OK)
        free = ok & (st.gpu_free[i] > 0)
        risk = float(st.risk[i][free].max()) if free.any() else 0.0
        if risk >= self.threshold:
            return f"gpufleet: failure risk {risk:.2f} within {self.horizon} (threshold {self.threshold:.2f})"
        return ""

    # ------------------------------------------------------------------ prioritize
    def costs(self, st: ClusterState, req: Request, names: Sequence[str]) -> dict[str, float]:
        """Policy cost per candidate node gpufleet knows and can place the request on (lower is better)."""
        growth = getattr(self.policy, "growth", None)
        extra = getattr(self.policy, "extra_cost", None)
        out: dict[str, float] = {}
        if growth is not None:
            nodes, slots, grow = growth(st, req)
            cost = grow + (extra(st, req, nodes, slots) if extra is not None else 0.0)
            for k, i in enumerate(nodes):
                name = st.names[int(i)]
                out[name] = min(out.get(name, math.inf), float(cost[k]))
        else:  # a policy without a cost: only its choice is preferred
            p = self.policy.place(st, req)
            out = {st.names[i]: (0.0 if p is not None and p.node == i else 1.0) for i in range(st.n_nodes)}
        if req.num_gpu > 1 and self.topology_weight:
            for name in out:
                i = st.names.index(name)
                free = st.usable_free(i) == FULL
                islands = st.island[i][free]
                fits = bool(len(islands)) and int(np.bincount(islands - islands.min()).max()) >= req.num_gpu
                out[name] += 0.0 if fits else self.topology_weight
        wanted = set(names)
        return {n: c for n, c in out.items() if n in wanted}

    def prioritize(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        names, _ = candidate_names(args)
        req = pod_request(_get(args, "Pod") or {})
        if req.num_gpu == 0:
            return [{"Host": n, "Score": 0} for n in names]
        cost = self.costs(self.state(), req, names)
        if not cost:
            return [{"Host": n, "Score": 0} for n in names]
        lo, hi = min(cost.values()), max(cost.values())
        out = []
        for n in names:
            if n not in cost:
                score = 0
            elif hi - lo < 1e-9:
                score = MAX_PRIORITY
            else:
                score = round(MAX_PRIORITY * (hi - cost[n]) / (hi - lo))
            out.append({"Host": n, "Score": score})
        return out


def extender_router(extender: Extender | Callable[[], Extender], prefix: str = "/scheduler") -> Any:
    """A FastAPI router with ``POST {prefix}/filter`` and ``POST {prefix}/prioritize``."""
    from fastapi import APIRouter, Body

    router = APIRouter(prefix=prefix, tags=["kubernetes scheduler extender"])

    def ext() -> Extender:
        return extender if isinstance(extender, Extender) else extender()

    @router.post("/filter", summary="kube-scheduler extender filter (ExtenderArgs → ExtenderFilterResult)")
    def filter_(args: dict[str, Any] = Body(...)) -> dict[str, Any]:
        try:
            return ext().filter(args)
        except Exception as exc:  # the protocol reports failures in the body's Error field
            return {"Nodes": None, "NodeNames": None, "FailedNodes": {}, "FailedAndUnresolvableNodes": {},
                    "Error": f"gpufleet: {exc}"}

    @router.post("/prioritize", summary="kube-scheduler extender prioritize (ExtenderArgs → HostPriorityList)")
    def prioritize(args: dict[str, Any] = Body(...)) -> list[dict[str, Any]]:
        return ext().prioritize(args)

    return router


def create_extender_app(extender: Extender | Callable[[], Extender]) -> Any:
    """A stand-alone FastAPI app serving the extender (run it beside kube-scheduler or mount it)."""
    from fastapi import FastAPI

    app = FastAPI(title="gpufleet kube-scheduler extender")
    app.include_router(extender_router(extender))
    return app
