"""Fleet mode: the allocator's cluster grows with the fleet.

Each fleet cycle, GPUs and nodes the fleet reader sees that the cluster does not hold yet are added (a
node that joined the cluster, or one that was down when the service started), with the CPU and memory the
fleet reports for them; allocations, the queue and operator overrides are untouched (node indexes and GPU
slots never move). Each join is logged and audited (``node.joined``). The cluster's layout is kept in the
service's database, so a restart rebuilds the same indexes — running jobs keep the GPUs they hold — and a
node that is silent at the restart is still in the cluster: its GPUs unknown to the API, not schedulable
until it answers again. A node that disappears stays, as before (unknown while silent, or lost)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gpufleet.allocator.jobs import Limits
from gpufleet.allocator.state import ClusterState, NodeSpec
from gpufleet.exporter.errors import GpufleetError
from gpufleet.exporter.schema import Device
from gpufleet.state.layout import load_layout, save_layout

if TYPE_CHECKING:
    from gpufleet.analytics.fleet.model import FleetView
    from gpufleet.jobs import QueueJobService
    from gpufleet.state.store import StateStore

log = logging.getLogger("gpufleet.growth")

Capacity = Mapping[str, tuple[float | None, float | None]]


def _milli(cap: tuple[float | None, float | None]) -> tuple[int, int]:
    cpus, mem = cap
    return int((cpus or 0) * 1000), int((mem or 0) // 2**20)


def node_specs(devices: Iterable[Device], capacity: Capacity) -> list[NodeSpec]:
    """One spec per node (sorted by name, GPUs by index; MIG instances left out)."""
    by_node: dict[str, list[Device]] = {}
    for d in devices:
        if not d.is_mig:
            by_node.setdefault(d.node, []).append(d)
    out = []
    for node, devs in sorted(by_node.items()):
        devs.sort(key=lambda d: (d.index, d.uuid))
        cpu, mem = _milli(capacity.get(node, (None, None)))
        out.append(NodeSpec(node, cpu, mem, len(devs), devs[0].model, devs[0].memory_total_bytes, None,
                            [d.uuid for d in devs]))
    return out


class FleetGrowth:
    """``store``: the service's state store (where the layout lives); ``audit``: the API's audit writer
    (None without the API)."""

    def __init__(self, store: StateStore, audit: Any = None, clock: Any = time.time) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock
        self.devices: dict[str, Device] = {}
        self.names: dict[str, str] = {}
        """uuid -> the naming its series came in (``native`` / ``dcgm``), for the reader's memory."""
        self.missing: list[Device] = []
        """GPUs of the stored layout the first read did not see (their node is silent, or they are gone)."""
        self.jobs: QueueJobService | None = None
        self._unsaved = False  # a layout write failed: retried every cycle until it succeeds

    # -- at start ----------------------------------------------------------------------------------
    def cluster(self, view: FleetView) -> ClusterState:
        """The cluster for the service's first fleet read: the stored layout (in its order), grown by what
        the read sees that the layout lacks; without a stored layout, the read's nodes sorted by name."""
        capacity = {n: (v.cpus, v.memory_bytes) for n, v in view.nodes.items()}
        seen = view.gpus()
        stored = load_layout(self.store)
        if not stored:
            state = ClusterState.from_specs(node_specs(seen, capacity))
            self._remember(seen, view.names)
            self._warn_capacity(state, capacity, state.names)
            self.save(state)
            return state
        specs, old = self._stored(stored)
        state = ClusterState.from_specs(specs)
        self._remember(old, {u: n for u, (_, n) in self._stored_names(stored).items()})
        present = {d.uuid for d in seen}
        self.missing = [d for d in old if d.uuid not in present]
        for d in self.missing:  # not seen now: not schedulable until the fleet sees it up again
            state.set_observed(d.uuid, False)
        for node, cap in capacity.items():  # capacity as the fleet reports it now, where it does
            if node in state.names and cap[0] is not None and cap[1] is not None:
                state.set_capacity(node, *_milli(cap))
        self._grow(state, view)
        return state

    def _stored(self, nodes: list[dict[str, Any]]) -> tuple[list[NodeSpec], list[Device]]:
        specs, devs = [], []
        for n in nodes:
            gpus = list(n.get("gpus", []))
            specs.append(NodeSpec(str(n["name"]), int(n.get("cpu_milli", 0)), int(n.get("memory_mib", 0)),
                                  len(gpus), str(n.get("model", "")), n.get("gpu_memory_bytes"), None,
                                  [str(g["uuid"]) for g in gpus]))
            for g in gpus:
                devs.append(Device(uuid=str(g["uuid"]), index=int(g.get("index", 0)), node=str(n["name"]),
                                   model=str(g.get("model", n.get("model", ""))),
                                   vendor=str(g.get("vendor", "nvidia")),
                                   memory_total_bytes=g.get("memory_total_bytes")))
        return specs, devs

    @staticmethod
    def _stored_names(nodes: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
        return {str(g["uuid"]): (str(n["name"]), str(g.get("names", "native")))
                for n in nodes for g in n.get("gpus", [])}

    def attach(self, jobs: QueueJobService) -> None:
        """The job service whose queue's cluster grows from now on."""
        self.jobs = jobs

    # -- every fleet cycle -------------------------------------------------------------------------
    def observe(self, view: FleetView) -> list[str]:
        """Add what this cycle's view holds that the cluster does not; returns the nodes added or grown."""
        jobs = self.jobs
        if jobs is None:
            return []
        with jobs.lock:
            queue = jobs.queue
            state = queue.state
            changed = self._grow(state, view)
            if self._unsaved and not changed:
                self._save_or_retry(state)
            if changed:
                queue.limits = Limits.of(state)  # new GPU types, bigger gangs: jobs for them are accepted
                store = getattr(queue, "store", None)
                if store is not None:  # allocations rows name the GPUs of the new slots
                    store.bind(list(state.names), [list(u) for u in state.uuids])
            return changed

    def _grow(self, state: ClusterState, view: FleetView) -> list[str]:
        capacity = {n: (v.cpus, v.memory_bytes) for n, v in view.nodes.items()}
        fresh = [d for d in view.gpus() if not d.is_mig and not state.knows(d.uuid)]
        for name in state.names:  # a node that joined before the fleet reported its CPU / memory
            cap = capacity.get(name)
            i = state.names.index(name)
            if cap is not None and cap[0] is not None and cap[1] is not None and \
                    (int(state.cpu_cap[i]), int(state.mem_cap[i])) == (0, 0):
                state.set_capacity(i, *_milli(cap))
        if not fresh:
            return []
        new_nodes = {d.node for d in fresh} - set(state.names)
        try:
            changed = state.add_nodes(node_specs(fresh, capacity))
        except GpufleetError as exc:
            log.warning("the cluster cannot take the new GPUs: %s", exc)
            return []
        self._remember(fresh, view.names)
        self._warn_capacity(state, capacity, [n for n in changed if n in new_nodes])
        now = view.ts if view.ts else self.clock()
        for node in changed:
            i = state.names.index(node)
            added = [d.uuid for d in fresh if d.node == node]
            what = "joined" if node in new_nodes else "grew"
            detail = {"gpus": len(added), "uuids": added, "model": state.models[state.model_id[i]],
                      "cpu_milli": int(state.cpu_cap[i]), "memory_mib": int(state.mem_cap[i]), "index": i}
            log.info("node %s %s the cluster: %d GPU(s) %s", node, what if what == "joined" else "grew in",
                     len(added), detail["model"], extra={"node": node, **detail})
            if self.audit is not None:
                try:
                    self.audit.append(user="system", role="system", action=f"node.{what}", target=node,
                                      outcome="ok", source="fleet", ts=now, detail=detail)
                except Exception:
                    log.exception("audit of node %s %s failed", node, what)
        self._save_or_retry(state)
        return changed

    def _save_or_retry(self, state: ClusterState) -> None:
        try:
            self.save(state)
            self._unsaved = False
        except GpufleetError as exc:  # the cluster has grown; the layout is written on a later cycle
            self._unsaved = True
            log.warning("the cluster layout was not stored (retried next cycle): %s", exc)

    # -- the layout --------------------------------------------------------------------------------
    def _remember(self, devices: Iterable[Device], names: Mapping[str, str]) -> None:
        for d in devices:
            self.devices[d.uuid] = d
            if d.uuid in names:
                self.names[d.uuid] = names[d.uuid]

    @staticmethod
    def _warn_capacity(state: ClusterState, capacity: Capacity, nodes: Iterable[str]) -> None:
        for node in nodes:
            cpus, mem = capacity.get(node, (None, None))
            if cpus is None or mem is None:
                log.warning("node %s reports no %s: run node_exporter or gpufleet's exporter there", node,
                            "CPU count" if cpus is None else "memory")

    def save(self, state: ClusterState) -> None:
        nodes = []
        for i, name in enumerate(state.names):
            gpus: list[dict[str, Any]] = []
            for u in state.uuids[i]:
                d = self.devices.get(u)
                gpus.append({"uuid": u, "index": d.index if d else len(gpus), "model": d.model if d else "",
                             "vendor": d.vendor if d else "nvidia",
                             "memory_total_bytes": d.memory_total_bytes if d else None,
                             "names": self.names.get(u, "native")})
            mem = state.gpu_mem[i]
            nodes.append({"name": name, "cpu_milli": int(state.cpu_cap[i]), "memory_mib": int(state.mem_cap[i]),
                          "model": state.models[state.model_id[i]],
                          "gpu_memory_bytes": int(mem) if mem == mem else None, "gpus": gpus})
        save_layout(self.store, nodes)
