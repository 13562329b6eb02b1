"""Read the fleet's inventory and live state from Prometheus or VictoriaMetrics in a fixed number of
batched instant queries per cycle (never one per GPU).

Per cycle, for each naming read (``native``, ``dcgm``, or both with ``auto``):

1. the inventory: ``gpufleet_gpu_info`` (native) or the identity labels of dcgm-exporter's memory
   series (``group by (UUID, gpu, modelName, Hostname, ...)``);
2. the latest value of every live field without labels: ``max by (__name__, uuid) ({__name__=~"..."})``;
3. the same for fields with labels, summed by their labels (``xid_errors{xid}``);

and once: ``up`` and ``timestamp(up)`` of the scrape targets, the exporter's node info
(``gpufleet_node_cpus``, ``gpufleet_node_memory_total_bytes``) and node_exporter's ``node_uname_info``,
CPU count and ``node_memory_MemTotal_bytes``. The queries run concurrently; :attr:`FleetView.queries`
counts them. A GPU reported in both namings is read once, from the native series.

A node whose target is ``up == 0``, has no ``up`` series any more, or whose ``up`` is older than
``stale_after`` seconds has its GPUs ``unknown``; the reader remembers every GPU it has seen, so a node
that goes silent still lists its GPUs.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
from gpufleet.analytics.datasets import FAILURE_FIELDS
from gpufleet.analytics.fleet.model import FleetView, NodeView
from gpufleet.analytics.fleet.names import FLEET_NAMES, Naming, naming
from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.errors import BackendUnavailable, ConfigError
from gpufleet.exporter.schema import Device, Labels

LIVE_FIELDS: tuple[str, ...] = tuple(dict.fromkeys((
    "up", "util_gpu", "util_memory", "fb_used", "fb_free", "fb_total", "temperature_gpu", "power_usage",
    "power_limit", "clock_event_reasons", "xid_last", "ecc_uncorrected_aggregate", *FAILURE_FIELDS)))
"""Fields every cycle reads by default: what the allocator, the API and failure scoring use."""

KINDS = ("prometheus", "victoriametrics")
_SELECTOR = re.compile(r'^\{?\s*((?:[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*,?\s*)*)\}?$')


def parse_selector(text: str | None) -> str:
    """``{job="gpu"}`` or ``job="gpu"`` -> the matcher list ``job="gpu"`` (validated); empty for none."""
    if not text or not text.strip():
        return ""
    m = _SELECTOR.match(text.strip())
    if m is None:
        raise ConfigError(f"fleet selector must look like {{job=\"gpu\"}}, got {text!r}")
    return m[1].strip().rstrip(",").strip()


_EQ = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


def selector_labels(text: str | None) -> dict[str, str]:
    """``{job="gpu",cluster="a"}`` -> ``{"job": "gpu", "cluster": "a"}`` (equality matchers only, as the
    history readers take them)."""
    body = parse_selector(text)
    if not body:
        return {}
    parts = [p.strip() for p in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', body) if p.strip()]
    out: dict[str, str] = {}
    for p in parts:
        m = _EQ.fullmatch(p)
        if m is None:
            raise ConfigError(f"history selector takes equality matchers only (label=\"value\"), got {p!r}")
        out[m[1]] = m[2]
    return out


def _and(sel: str, more: str) -> str:
    parts = [p for p in (sel, more) if p]
    return "{" + ",".join(parts) + "}"


class FleetReader:
    """The fleet over a Prometheus-compatible query API; :meth:`read` is one cycle."""

    backend = "Prometheus"

    def __init__(self, url: str, *, names: str = "auto", selector: str | None = None,
                 fields: Sequence[str] = LIVE_FIELDS, stale_after: float = 120.0, timeout: float = 30.0,
                 headers: dict[str, str] | None = None, workers: int = 8) -> None:
        if names not in FLEET_NAMES:
            raise ConfigError(f"fleet names must be one of {', '.join(FLEET_NAMES)}, got {names!r}")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"fleet URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.names = names
        self.selector = parse_selector(selector)
        cat = catalogue()
        for f in fields:
            if f not in cat:
                raise ConfigError(f"unknown field {f!r}: not in the metric catalogue")
        self.fields = tuple(dict.fromkeys(("up", *fields)))
        self.stale_after = stale_after
        self.client = httpx.Client(timeout=timeout, headers=headers,
                                   limits=httpx.Limits(max_connections=workers))
        self.pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpufleet-fleet")
        self._lock = threading.Lock()
        self.known: dict[str, Device] = {}
        self.known_names: dict[str, str] = {}
        self.node_instance: dict[str, str] = {}
        self.last_view: FleetView | None = None

    def remember(self, devices: Sequence[Device], names: dict[str, str] | None = None) -> None:
        """GPUs known from before this reader (the service's stored cluster layout): listed from the next
        cycle on, ``unknown`` while their node is silent, back when it answers. ``names``: uuid -> the
        naming (``native`` / ``dcgm``) their series came in (default ``native``)."""
        with self._lock:
            for d in devices:
                if d.uuid not in self.known:
                    self.known[d.uuid] = d
                    self.known_names[d.uuid] = (names or {}).get(d.uuid, "native")

    # ------------------------------------------------------------------ http
    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        try:
            r = self.client.get(f"{self.url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"})
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"{self.backend} at {self.url} is unreachable: {exc}") from None
        if r.status_code >= 500 or r.status_code == 429:
            raise BackendUnavailable(f"{self.backend} at {self.url} answered HTTP {r.status_code}: {r.text[:200]}")
        try:
            body = r.json()
        except ValueError:
            raise BackendUnavailable(f"{self.backend} at {self.url} answered HTTP {r.status_code} with no "
                                     f"JSON (is this a {self.backend} query URL?)") from None
        if r.status_code >= 400 or body.get("status") != "success":
            raise ConfigError(f"{self.backend} at {self.url} rejected the query {expr!r}: {body.get('error', r.text[:200])}")
        result = body["data"]["result"]
        return result if isinstance(result, list) else []

    # ------------------------------------------------------------------ the queries of one cycle
    def _modes(self) -> list[Naming]:
        return [naming("native"), naming("dcgm")] if self.names == "auto" else [naming(self.names)]

    def plan(self) -> dict[str, str]:
        """The fixed set of queries of one cycle: key -> PromQL."""
        sel = self.selector
        cat = catalogue()
        q: dict[str, str] = {"up": f"up{_and(sel, '')}", "up_ts": f"timestamp(up{_and(sel, '')})",
                             "node_info": _and(sel, '__name__=~"gpufleet_node_cpus|gpufleet_node_memory_total_bytes"'),
                             "uname": "node_uname_info", "cpus": 'count by (instance) (node_cpu_seconds_total{mode="idle"})',
                             "mem": "node_memory_MemTotal_bytes"}
        plain = tuple(f for f in self.fields if not cat.field(f).labels)
        labelled = tuple(f for f in self.fields if cat.field(f).labels)
        for nm in self._modes():
            if nm.mode == "native":
                q["native_inv"] = _and(sel, '__name__="gpufleet_gpu_info"')
            else:
                ident = ", ".join((nm.uuid, nm.index, nm.model, nm.node, nm.pci_bus_id, "instance", nm.mig_gi,
                                   nm.mig_profile))
                inv = nm.names_regex(("fb_used", "fb_free", "fb_total", "temperature_gpu", "power_usage", "util_gpu"))
                q["dcgm_inv"] = f'group by ({ident}) ({_and(sel, f"__name__=~{chr(34)}{inv}{chr(34)}")})'
            rx = nm.names_regex(plain)
            if rx:
                q[f"{nm.mode}_plain"] = f'max by (__name__, {nm.uuid}) ({_and(sel, f"__name__=~{chr(34)}{rx}{chr(34)}")})'
            rx = nm.names_regex(labelled)
            if rx:
                by = sorted({lab for f in labelled for lab in cat.field(f).labels})
                q[f"{nm.mode}_labelled"] = (f'sum by (__name__, {nm.uuid}, {", ".join(by)}) '
                                            f'({_and(sel, f"__name__=~{chr(34)}{rx}{chr(34)}")})')
        return q

    def read(self, now: float | None = None) -> FleetView:
        """One cycle: inventory + live state of the whole fleet at ``now`` (default: the wall clock)."""
        t0 = time.perf_counter()
        at = time.time() if now is None else now
        plan = self.plan()
        futures = {k: self.pool.submit(self.query, expr, at) for k, expr in plan.items()}
        res: dict[str, list[dict[str, Any]]] = {}
        errors: list[BaseException] = []
        for k, fut in futures.items():
            try:
                res[k] = fut.result()
            except (BackendUnavailable, ConfigError) as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        with self._lock:
            view = self._build(at, res)
        view.queries = len(plan)
        view.duration_s = time.perf_counter() - t0
        self.last_view = view
        return view

    # ------------------------------------------------------------------ assembling the view
    def _build(self, at: float, res: dict[str, list[dict[str, Any]]]) -> FleetView:
        view = FleetView(ts=at)
        present: dict[str, str] = {}  # uuid -> instance it was reported from this cycle
        for key, nm in (("native_inv", naming("native")), ("dcgm_inv", naming("dcgm"))):
            for s in res.get(key, ()):
                d, inst = self._device(s["metric"], nm)
                if d is None or (d.uuid in present and self.known_names.get(d.uuid) == "native"
                                 and nm.mode == "dcgm"):
                    continue  # read once: the native series win over dcgm's
                present[d.uuid] = inst
                old = self.known.get(d.uuid)
                if old is not None and nm.mode == "dcgm" and self.known_names.get(d.uuid) == "native" \
                        and old.node == d.node:
                    d = old
                self.known[d.uuid], self.known_names[d.uuid] = d, nm.mode
                if inst:
                    self.node_instance[d.node] = inst
        # live values, native first so a GPU both report is read once
        for mode in ("native", "dcgm"):
            nm = naming(mode)
            for kind in ("plain", "labelled"):
                for s in res.get(f"{mode}_{kind}", ()):
                    labels = s["metric"]
                    uuid = labels.get(nm.uuid)
                    m = nm.metric(labels.get("__name__", ""))
                    if uuid is None or m is None or self.known_names.get(uuid) != mode:
                        continue
                    v = float(s["value"][1]) / nm.scale(m)
                    if kind == "plain":
                        view.values.setdefault(uuid, {})[m.field] = v
                    else:
                        extra: Labels = tuple(sorted((k, labels[k]) for k in m.labels if labels.get(k)))
                        view.labelled.setdefault(uuid, []).append((m.field, extra, v))
        # dcgm-exporter has no memory-total series by default: used + free (+ reserved)
        for uuid, vals in view.values.items():
            d = self.known.get(uuid)
            if d is not None and d.memory_total_bytes is None:
                total = vals.get("fb_total")
                if total is None and "fb_used" in vals and "fb_free" in vals:
                    total = vals["fb_used"] + vals["fb_free"] + vals.get("fb_reserved", 0.0)
                if total is not None:
                    self.known[uuid] = _replace_memory(d, int(total))
        # targets: instance -> (up, sample time)
        up = {s["metric"].get("instance", ""): float(s["value"][1]) for s in res.get("up", ())}
        up_ts = {s["metric"].get("instance", ""): float(s["value"][1]) for s in res.get("up_ts", ())}
        for uuid, d in self.known.items():
            nv = view.nodes.get(d.node)
            if nv is None:
                inst = self.node_instance.get(d.node, "")
                state = "up"
                if inst not in up or up[inst] < 1:
                    state = "down" if inst in up else "stale"
                elif at - up_ts.get(inst, at) > self.stale_after:
                    state = "stale"
                nv = view.nodes[d.node] = NodeView(d.node, inst, self.known_names[uuid], state,
                                                   up_ts.get(inst))
            nv.gpus.append(uuid)
            view.devices[uuid] = d
            view.names[uuid] = self.known_names[uuid]
            if not nv.answering:
                view.health[uuid] = "unknown"
            elif view.values.get(uuid, {}).get("up", 1.0) < 1:  # the exporter says so, whatever else is there
                view.health[uuid] = "lost"
            elif uuid not in present:
                # dcgm-exporter drops a GPU that fell off the bus; gpufleet's exporter drops only stale ones
                view.health[uuid] = "lost" if self.known_names[uuid] == "dcgm" else "unknown"
            else:
                view.health[uuid] = "ok"
        self._capacity(view, res)
        return view

    def _device(self, labels: dict[str, str], nm: Naming) -> tuple[Device | None, str]:
        uuid = labels.get(nm.uuid)
        node = labels.get(nm.node)
        if not uuid or not node:
            return None, ""
        try:
            index = int(labels.get(nm.index, "0") or 0)
        except ValueError:
            index = 0
        parent = labels.get(nm.mig_parent) if nm.mig_parent else None
        gi = labels.get(nm.mig_gi)
        if nm.mode == "dcgm" and gi:  # dcgm-exporter: a MIG instance carries its parent's UUID
            parent, uuid = uuid, f"{uuid}/{gi}"
        old = self.known.get(uuid)
        mem = old.memory_total_bytes if old is not None else None
        d = Device(uuid=uuid, index=index, node=node, model=labels.get(nm.model, ""),
                   vendor=labels.get("vendor", "nvidia") or "nvidia", pci_bus_id=labels.get(nm.pci_bus_id, ""),
                   memory_total_bytes=mem, driver_version=labels.get("driver_version"),
                   cuda_version=labels.get("cuda_version"), serial=labels.get("serial"),
                   mig_parent_uuid=parent or None,
                   mig_gi_id=int(gi) if gi and gi.isdigit() else None,
                   mig_profile=labels.get(nm.mig_profile) or None,
                   virtualization=labels.get("virtualization"))
        return d, labels.get("instance", "")

    def _capacity(self, view: FleetView, res: dict[str, list[dict[str, Any]]]) -> None:
        """Node CPU / memory: node_exporter (matched by ``nodename``) first, else the exporter's node info."""
        for s in res.get("node_info", ()):
            nv = view.nodes.get(s["metric"].get("node", ""))
            if nv is None:
                continue
            v = float(s["value"][1])
            if s["metric"].get("__name__") == "gpufleet_node_cpus":
                nv.cpus = v
            else:
                nv.memory_bytes = v
            nv.capacity_from = "exporter"
        inst_node = {s["metric"].get("instance", ""): s["metric"].get("nodename", "") for s in res.get("uname", ())}
        for key in ("cpus", "mem"):
            for s in res.get(key, ()):
                nv = view.nodes.get(inst_node.get(s["metric"].get("instance", ""), ""))
                if nv is None:
                    continue
                if key == "cpus":
                    nv.cpus = float(s["value"][1])
                else:
                    nv.memory_bytes = float(s["value"][1])
                nv.capacity_from = "node_exporter"

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def __enter__(self) -> FleetReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _replace_memory(d: Device, total: int) -> Device:
    from dataclasses import replace

    return replace(d, memory_total_bytes=total)


class PrometheusFleet(FleetReader):
    backend = "Prometheus"


class VictoriaFleet(FleetReader):
    """VictoriaMetrics (single node, or vmselect's ``/select/0/prometheus`` URL) scraping the exporters."""

    backend = "VictoriaMetrics"


def open_fleet(url: str, kind: str = "prometheus", **kwargs: Any) -> FleetReader:
    if kind not in KINDS:
        raise ConfigError(f"fleet kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return (PrometheusFleet if kind == "prometheus" else VictoriaFleet)(url, **kwargs)
