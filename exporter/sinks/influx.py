"""The InfluxDB sink: line protocol through influxdb-client's write API, buffered on disk, retried.

One point per (family, device, extra labels, time): the measurement is ``gpufleet_<family>``, tags are the
device identity (``uuid gpu node model pci_bus_id vendor``, MIG tags on instances) plus the metric's own
labels, fields are the catalogue field ids, timestamps are nanoseconds. VictoriaMetrics stores a field
as the series ``gpufleet_<family>_<field>``.

Every point goes through a bounded on-disk buffer (:class:`~exporter.sinks.buffer.DiskBuffer`): the
collection thread appends, a sender thread writes batches in order and removes them only once the
server accepted them, so an outage (or a restart of the exporter) loses nothing up to the buffer's
size, and nothing is sent twice. Failed writes back off exponentially. When the buffer is full the
overflow policy (``drop_oldest`` or ``drop_newest``) applies and is counted in
``gpufleet_influx_dropped_points_total{policy}``.

An unreachable or refusing server is reported at the first failed write (the sender wakes on every
snapshot, so within one collection interval): one WARNING naming the URL and the reason, and
``gpufleet_influx_up`` 0; the retries after it log at DEBUG, and the recovery logs once more.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gpufleet.exporter.catalogue import Catalogue, catalogue
from gpufleet.exporter.schema import Device, Sample, Snapshot
from gpufleet.exporter.sinks.base import SelfMetric, Sink
from gpufleet.exporter.sinks.buffer import DiskBuffer

log = logging.getLogger(__name__)


def _esc_key(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _esc_measurement(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _identity_tags(d: Device) -> list[tuple[str, str]]:
    tags = [("gpu", str(d.index)), ("model", d.model), ("node", d.node), ("pci_bus_id", d.pci_bus_id),
            ("uuid", d.uuid), ("vendor", d.vendor)]
    if d.is_mig:
        tags += [("compute_instance_id", "" if d.mig_ci_id is None else str(d.mig_ci_id)),
                 ("gpu_instance_id", "" if d.mig_gi_id is None else str(d.mig_gi_id)),
                 ("mig_profile", d.mig_profile or ""), ("parent_uuid", d.mig_parent_uuid or "")]
    return tags


def masked_url(url: str) -> str:
    """The URL without any ``user:password@`` part (safe to log)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def failure_reason(exc: BaseException) -> str:
    """A short reason for a failed write: the HTTP status, or what the connection attempt said."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        reason = getattr(exc, "reason", "") or ""
        hint = {401: " (check influx.token)", 403: " (the token may not write to the bucket)",
                404: " (check influx.org and influx.bucket)"}.get(status, "")
        return f"HTTP {status} {reason}".strip() + hint
    chain: list[BaseException] = []  # the exception, its causes and urllib3's wrapped reason
    stack: list[object] = [exc]
    while stack and len(chain) < 10:
        e = stack.pop()
        if not isinstance(e, BaseException) or any(e is c for c in chain):
            continue
        chain.append(e)
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None)]
    for e in chain:
        if isinstance(e, ConnectionRefusedError) or "Connection refused" in str(e):
            return "connection refused"
        if isinstance(e, TimeoutError) or "timed out" in str(e).lower():
            return "timed out"
        if "Name or service not known" in str(e) or "nodename nor servname" in str(e):
            return "host name not found"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _fmt_value(v: float) -> str:
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(float(v))


def snapshot_lines(snapshot: Snapshot, cat: Catalogue | None = None) -> list[str]:
    """The line-protocol points of one snapshot (info series and non-catalogue fields left out)."""
    cat = cat or catalogue()
    by_field = {m.field: m for m in cat.metrics}
    devices = {d.uuid: d for d in snapshot.devices}
    ident: dict[str, list[tuple[str, str]]] = {}
    points: dict[tuple[str, str, tuple[tuple[str, str], ...], int], list[str]] = {}
    samples = list(snapshot.samples)
    have_up = {s.uuid for s in samples if s.field == "up"}
    for uuid, value in snapshot.up.items():
        if uuid not in have_up:
            samples.append(Sample(uuid, "up", float(value), snapshot.ts))
    for s in samples:
        m = by_field.get(s.field)
        if m is None or m.type == "info" or m.scope not in ("device", "process"):
            continue
        if s.uuid not in ident:
            d = devices.get(s.uuid)
            ident[s.uuid] = _identity_tags(d) if d else [("node", snapshot.node), ("uuid", s.uuid)]
        key = (m.family, s.uuid, s.labels, round(s.ts * 1e9))
        points.setdefault(key, []).append(f"{_esc_key(s.field)}={_fmt_value(s.value)}")
    lines = []
    for (family, uuid, labels, ts_ns), fields in points.items():
        tags = sorted([*ident[uuid], *labels])
        tag_str = "".join(f",{_esc_key(k)}={_esc_key(v)}" for k, v in tags if v != "")
        lines.append(f"{_esc_measurement('gpufleet_' + family)}{tag_str} {','.join(fields)} {ts_ns}")
    return lines


class InfluxSink(Sink):
    """Write snapshots to InfluxDB (or anything speaking its v2 write API, e.g. VictoriaMetrics)."""

    name = "influx"

    def __init__(self, url: str, buffer_dir: Path | str, *, token: str | None = None, org: str = "gpufleet",
                 bucket: str = "gpufleet", batch_size: int = 5000, flush_interval: float = 1.0,
                 buffer_max_points: int = 5_000_000, overflow: str = "drop_oldest",
                 min_backoff: float = 0.5, max_backoff: float = 30.0, timeout_s: float = 10.0,
                 cat: Catalogue | None = None) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url, self.org, self.bucket = url, org, bucket
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.cat = cat or catalogue()
        self.buffer = DiskBuffer(buffer_dir, buffer_max_points, overflow)
        self._client = InfluxDBClient(url=url, token=token or "", org=org, timeout=int(timeout_s * 1000))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self.written = 0
        self.errors = 0
        self.last_error: str | None = None
        self._healthy = True
        self._reported = False  # the outage was logged as a WARNING (once per outage)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpufleet-influx", daemon=True)
        self._thread.start()

    def write(self, snapshot: Snapshot) -> None:
        lines = snapshot_lines(snapshot, self.cat)
        dropped = self.buffer.append(lines)
        if dropped:
            log.warning("influx buffer full: dropped %d points (%s)", dropped, self.buffer.overflow)
        self._wake.set()

    def _send(self, lines: list[str]) -> None:
        from influxdb_client import WritePrecision

        self._write_api.write(bucket=self.bucket, org=self.org, record="\n".join(lines),
                              write_precision=WritePrecision.NS)  # type: ignore[arg-type]

    def flush_once(self) -> int:
        """Send one batch from the buffer; returns points delivered (raises on a failed write)."""
        start, lines = self.buffer.peek(self.batch_size)
        if not lines:
            return 0
        self._send(lines)
        self.buffer.commit(start, len(lines))
        self.written += len(lines)
        return len(lines)

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                while self.flush_once() and not self._stop.is_set():
                    pass
                backoff = 0.0
                if self._reported:
                    log.warning("InfluxDB at %s is reachable again; %d points delivered so far",
                                masked_url(self.url), self.written)
                    self._reported = False
                self._healthy = True
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            except Exception as exc:  # server down, refused, 5xx: keep the points, retry later
                self.errors += 1
                self.last_error = failure_reason(exc)
                self._healthy = False
                backoff = min(self.max_backoff, max(self.min_backoff, backoff * 2))
                if not self._reported:
                    self._reported = True
                    log.warning("InfluxDB at %s is unreachable (%s): %d points kept in the buffer, "
                                "retrying with backoff up to %.0f s", masked_url(self.url), self.last_error,
                                self.buffer.pending(), self.max_backoff)
                else:
                    log.debug("influx write failed (%s); %d points buffered; retry in %.1f s",
                              self.last_error, self.buffer.pending(), backoff)
                self._stop.wait(backoff)

    def pending(self) -> int:
        return self.buffer.pending()

    def self_metrics(self) -> list[SelfMetric]:
        return [
            ("influx_buffered_points", (), float(self.buffer.pending())),
            ("influx_written_points", (), float(self.written)),
            ("influx_dropped_points", (("policy", self.buffer.overflow),), float(self.buffer.dropped)),
            ("influx_write_errors", (), float(self.errors)),
            ("influx_up", (), 1.0 if self._healthy else 0.0),
        ]

    def close(self, drain_timeout: float = 5.0) -> None:
        """Try to deliver what is buffered for up to ``drain_timeout`` s; the rest stays on disk."""
        if self._stop.is_set():
            return
        self._wake.set()
        waited = 0.0
        while self.buffer.pending() and self._healthy and waited < drain_timeout:
            self._stop.wait(0.05)
            waited += 0.05
        self._stop.set()
        self._wake.set()
        self._thread.join(self.max_backoff + 10)
        self.buffer.close()
        self._client.close()

    def info(self) -> dict[str, Any]:
        return {"url": masked_url(self.url), "bucket": self.bucket, "pending": self.pending(),
                "written": self.written, "dropped": self.buffer.dropped, "errors": self.errors,
                "up": self._healthy, "last_error": self.last_error}
