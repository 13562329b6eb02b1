"""Idle-GPU detection: GPUs that are allocated but have done (almost) nothing for a while.

A GPU is *allocated idle* when a job holds it and its utilisation has stayed under ``threshold``
(default 5 %) for at least ``window_s`` (default 30 min). :class:`IdleDetector` keeps, per GPU uuid, when
its utilisation last went under the threshold; feed it snapshots (or (uuid, ts, utilisation) readings) as
they come. :meth:`IdleDetector.samples` gives the ``gpu_allocated_idle`` series (catalogue field, 1 or 0
per allocated GPU) that ``gpufleet serve`` exports as ``gpufleet_gpu_allocated_idle``.
:func:`idle_from_prometheus` answers the same question from a Prometheus-compatible server's history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from gpufleet.exporter.errors import BackendUnavailable
from gpufleet.exporter.schema import Sample, Snapshot

FIELD = "gpu_allocated_idle"


@dataclass
class IdleGpu:
    uuid: str
    idle_since: float
    idle_s: float
    job: str = ""


@dataclass
class IdleDetector:
    threshold: float = 0.05
    window_s: float = 1800.0
    low_since: dict[str, float] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)

    def observe(self, uuid: str, ts: float, util: float) -> None:
        self.last_seen[uuid] = ts
        if util < self.threshold:
            self.low_since.setdefault(uuid, ts)
        else:
            self.low_since.pop(uuid, None)

    def observe_snapshot(self, snap: Snapshot) -> None:
        for s in snap.samples:
            if s.field == "util_gpu" and not s.labels:
                self.observe(s.uuid, s.ts, s.value)

    def idle(self, allocated: dict[str, str] | Iterable[str], now: float) -> list[IdleGpu]:
        """Allocated GPUs (uuid -> job, or uuids) under the threshold for at least the window."""
        jobs = allocated if isinstance(allocated, dict) else dict.fromkeys(allocated, "")
        out = []
        for uuid, job in jobs.items():
            since = self.low_since.get(uuid)
            if since is not None and now - since >= self.window_s:
                out.append(IdleGpu(uuid, since, now - since, job))
        return sorted(out, key=lambda g: -g.idle_s)

    def samples(self, allocated: dict[str, str] | Iterable[str], now: float) -> list[Sample]:
        """``gpu_allocated_idle`` per allocated GPU: 1 when idle for the window, else 0."""
        jobs = allocated if isinstance(allocated, dict) else dict.fromkeys(allocated, "")
        idle = {g.uuid for g in self.idle(jobs, now)}
        return [Sample(u, FIELD, 1.0 if u in idle else 0.0, now) for u in sorted(jobs)]


def idle_from_prometheus(url: str, allocated: dict[str, str], *, threshold: float = 0.05,
                         window_s: float = 1800.0, at: float | None = None,
                         metric: str = "gpufleet_gpu_utilization_ratio", timeout: float = 10.0) -> list[IdleGpu]:
    """Allocated GPUs whose utilisation never reached ``threshold`` over the last ``window_s``.

    Asks ``max_over_time(metric[window])`` of a Prometheus-compatible API (Prometheus, VictoriaMetrics).
    A GPU with no samples in the window is not called idle (no data is not idleness).
    """
    expr = f"max_over_time({metric}[{int(window_s)}s])"
    params: dict[str, str] = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    try:
        r = httpx.get(f"{url.rstrip('/')}/api/v1/query", params=params, timeout=timeout)
        r.raise_for_status()
        result = r.json()["data"]["result"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise BackendUnavailable(f"cannot query {url}: {exc}") from None
    out = []
    for series in result:
        uuid = series["metric"].get("uuid", "")
        if uuid in allocated and float(series["value"][1]) < threshold:
            out.append(IdleGpu(uuid, float(series["value"][0]) - window_s, window_s, allocated[uuid]))
    return sorted(out, key=lambda g: g.uuid)
