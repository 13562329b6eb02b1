"""What the API reads and changes: the live fleet view that `gpufleet serve` keeps current, and the
services behind the API's actions.

``FleetView`` is a cache and nothing else: the service writes the latest snapshot, health, failure risk,
forecasts and the capacity plan into it; the API reads plain-data copies. ``FleetState`` is what the
API is handed: that view plus the job service, the silence service and the alert source, each given
once at construction (by `gpufleet.service.build_service`) through the small protocols below — nothing
is attached to it afterwards.
"""

from __future__ import annotations

import builtins
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpufleet.exporter.errors import Conflict, NotFound
from gpufleet.exporter.schema import Device, Snapshot


class JobService(Protocol):
    def submit(self, jobs: builtins.list[dict[str, Any]], user: str, team: str | None) -> builtins.list[dict[str, Any]]: ...
    def list(self, user: str | None = None) -> builtins.list[dict[str, Any]]: ...
    def get(self, job_id: str) -> dict[str, Any]: ...
    def cancel(self, job_id: str) -> dict[str, Any]: ...
    def allocations(self) -> builtins.list[dict[str, Any]]: ...
    def set_gpu_health(self, uuid: str, state: str, reason: str = "", by: str = "") -> None: ...
    def logs(self, job_id: str, offset: int = 0) -> tuple[str, int]: ...


class SilenceService(Protocol):
    def add(self, matchers: builtins.list[dict[str, str]], ends_at: float, comment: str,
            created_by: str) -> dict[str, Any]: ...
    def list(self) -> builtins.list[dict[str, Any]]: ...
    def expire(self, silence_id: str) -> None: ...


class AlertSource(Protocol):
    def alerts(self) -> list[dict[str, Any]]: ...


@dataclass
class FleetView:
    """The service's current view, guarded by one lock; every getter returns plain data copies."""

    snapshot: Snapshot | None = None
    devices: dict[str, Device] = field(default_factory=dict)
    gpu_state: dict[str, str] = field(default_factory=dict)  # uuid -> cordoned / draining
    health: dict[str, str] = field(default_factory=dict)  # fleet mode: uuid -> ok / lost / unknown
    risk: dict[str, dict[str, float]] = field(default_factory=dict)  # uuid -> horizon -> p
    risk_signals: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    forecast: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # per-uuid views built once per snapshot, so reads cost O(GPUs asked for), not O(samples)
    _values: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)
    _processes: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    _gpu_list: list[dict[str, Any]] | None = field(default=None, repr=False)

    # -- updates from the service --------------------------------------------------------------------
    def update_snapshots(self, snapshots: list[Snapshot]) -> None:
        with self._lock:
            merged = Snapshot(ts=max((s.ts for s in snapshots), default=time.time()), node="*")
            for snap in snapshots:
                merged.devices += snap.devices
                merged.samples += snap.samples
                merged.up.update(snap.up)
            self.snapshot = merged
            for d in merged.devices:
                self.devices[d.uuid] = d
            values: dict[str, dict[str, float]] = {}
            processes: dict[str, dict[str, dict[str, Any]]] = {}
            for s in merged.samples:
                if not s.labels:
                    values.setdefault(s.uuid, {})[s.field] = s.value
                elif s.field == "process_memory":
                    labels = dict(s.labels)
                    processes.setdefault(s.uuid, {})[labels.get("pid", "?")] = {
                        "pid": int(labels.get("pid", "0") or 0), "memory_bytes": s.value,
                        "container": labels.get("container") or None, "pod": labels.get("pod") or None,
                        "namespace": labels.get("namespace") or None}
            self._values = values
            self._processes = {u: list(p.values()) for u, p in processes.items()}
            self._gpu_list = None
            self.ready = True

    def update_health(self, health: dict[str, str]) -> None:
        """Fleet mode: each GPU's health as the fleet reader sees it (``unknown`` on a silent node)."""
        with self._lock:
            self.health = dict(health)
            self._gpu_list = None

    def update_risk(self, risk: dict[str, dict[str, float]], signals: dict[str, dict[str, list[str]]] | None = None) -> None:
        with self._lock:
            self.risk = {u: dict(h) for u, h in risk.items()}
            self.risk_signals = signals or {}
            self._gpu_list = None

    # -- reads ---------------------------------------------------------------------------------------
    def gpus(self) -> list[dict[str, Any]]:
        with self._lock:
            if self._gpu_list is None:
                order = sorted(self.devices, key=lambda u: (self.devices[u].node, self.devices[u].index))
                self._gpu_list = [self._gpu(u) for u in order]
            return self._gpu_list

    def gpu(self, uuid: str) -> dict[str, Any]:
        with self._lock:
            if uuid not in self.devices:
                raise NotFound(f"no GPU with uuid {uuid!r}")
            return self._gpu(uuid)

    def _gpu(self, uuid: str) -> dict[str, Any]:
        d = self.devices[uuid]
        values = self._values.get(uuid, {})
        snap = self.snapshot
        up = bool(snap.up.get(uuid, 1)) if snap is not None else True
        health = self.health.get(uuid) or ("ok" if up else "lost")
        return {
            "uuid": uuid, "index": d.index, "node": d.node, "model": d.model, "vendor": d.vendor,
            "up": health == "ok", "health": health,
            "state": self.gpu_state.get(uuid, "ok"),
            "utilization": values.get("util_gpu"), "memory_used_bytes": values.get("fb_used"),
            "memory_total_bytes": values.get("fb_total", d.memory_total_bytes),
            "temperature_celsius": values.get("temperature_gpu"), "power_watts": values.get("power_usage"),
            "risk": dict(self.risk.get(uuid, {})), "processes": list(self._processes.get(uuid, [])),
        }

    def predictions(self) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for uuid, horizons in self.risk.items():
                node = self.devices[uuid].node if uuid in self.devices else ""
                for horizon, p in horizons.items():
                    out.append({"uuid": uuid, "node": node, "horizon": horizon, "probability": p,
                                "top_signals": self.risk_signals.get(uuid, {}).get(horizon, [])})
            return sorted(out, key=lambda r: -r["probability"])

    def set_override(self, uuid: str, state: str) -> None:
        """An operator override (cordoned / draining / offline; ``ok`` clears it) as the view shows it."""
        with self._lock:
            if state == "ok":
                self.gpu_state.pop(uuid, None)
            else:
                self.gpu_state[uuid] = state
            self._gpu_list = None

    def has(self, uuid: str) -> bool:
        with self._lock:
            return uuid in self.devices

    def device_list(self) -> builtins.list[Device]:
        with self._lock:
            return list(self.devices.values())


@dataclass(frozen=True)
class FleetState:
    """The API's backend: the fleet view and the services behind the API's actions, fixed at construction."""

    view: FleetView = field(default_factory=FleetView)
    jobs: JobService | None = None
    silences: SilenceService | None = None
    alert_source: AlertSource | None = None

    # -- reads (the view's) --------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.view.ready

    @property
    def forecast(self) -> dict[str, Any]:
        return self.view.forecast

    @property
    def plan(self) -> dict[str, Any]:
        return self.view.plan

    def gpus(self) -> builtins.list[dict[str, Any]]:
        return self.view.gpus()

    def gpu(self, uuid: str) -> dict[str, Any]:
        return self.view.gpu(uuid)

    def predictions(self) -> builtins.list[dict[str, Any]]:
        return self.view.predictions()

    def update_snapshots(self, snapshots: builtins.list[Snapshot]) -> None:
        """Fill the view (API tests and benchmarks that run the API without a service)."""
        self.view.update_snapshots(snapshots)

    def alerts(self) -> builtins.list[dict[str, Any]]:
        return self.alert_source.alerts() if self.alert_source else []

    # -- fleet actions -------------------------------------------------------------------------------
    def set_gpu(self, uuid: str, state: str, reason: str = "", by: str = "") -> dict[str, Any]:
        if not self.view.has(uuid):
            raise NotFound(f"no GPU with uuid {uuid!r}")
        if self.jobs is not None:  # stored first (the override is acknowledged once it is in the database)
            self.jobs.set_gpu_health(uuid, state, reason=reason, by=by)
        self.view.set_override(uuid, state)
        return self.view.gpu(uuid)

    def job_service(self) -> JobService:
        if self.jobs is None:
            raise Conflict("the job queue is not running in this service")
        return self.jobs

    def silence_service(self) -> SilenceService:
        if self.silences is None:
            raise Conflict("the alert engine is not running in this service")
        return self.silences
