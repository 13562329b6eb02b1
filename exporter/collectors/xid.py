"""XID errors through NVML's event API, read by a background thread so none is missed between scrapes.

``start()`` creates one event set (nvmlEventSetCreate), registers every physical GPU for
``nvmlEventTypeXidCriticalError`` (nvmlDeviceRegisterEvents) and starts a daemon thread that loops on
nvmlEventSetWait with a short timeout. Each XID becomes an Event (drained by the next collect) and
increments a per-(GPU, code) counter; ``xid_last`` is the dcgm-compatible last-code gauge (0 = none yet).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import Counter
from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice
from gpufleet.exporter.nvml_query import NA, GpuLost, NvmlQuery
from gpufleet.exporter.schema import Event, EventKind

log = logging.getLogger(__name__)
NO_INSTANCE = 0xFFFFFFFF


def handle_key(handle: Any) -> Any:
    """A hashable identity for an NVML handle (ctypes pointers compare by address)."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return id(handle)


class XidCollector(Collector):
    name = "xid"

    def __init__(self, wait_ms: int = 500) -> None:
        super().__init__()
        self.wait_ms = wait_ms
        self._set: Any = NA
        self._by_handle: dict[Any, str] = {}
        self._registered: list[str] = []
        self._lock = threading.Condition()
        self._events: list[Event] = []
        self._counts: Counter[tuple[str, int]] = Counter()
        self._last: dict[str, int] = {}
        self._processed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.thread_errors: list[str] = []
        self.node = ""

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, query: NvmlQuery, devices: list[NvmlDevice]) -> None:
        super().start(query, devices)
        n = self.nvml
        physical = [d for d in devices if not d.is_mig]
        if physical:
            self.node = physical[0].device.node
        self._set = query.call("system", "xid_event_set", "nvmlEventSetCreate")
        if self._set is NA:
            return
        for dev in physical:
            if dev.lost:
                continue
            try:
                ok = query.call(dev.uuid, "xid_errors", "nvmlDeviceRegisterEvents", dev.handle,
                                n.nvmlEventTypeXidCriticalError, self._set)
            except GpuLost:
                continue  # the source finds it lost on its first cycle
            if ok is not NA:
                self._registered.append(dev.uuid)
                self._by_handle[handle_key(dev.handle)] = dev.uuid
        if not self._registered:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpufleet-xid", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_ms / 1000 * 4 + 1)
            self._thread = None
        if self._set is not NA and self.q is not None:
            self.q.call("system", "xid_event_set", "nvmlEventSetFree", self._set, errors=self.thread_errors)
            self._set = NA

    @property
    def thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the event thread ----------------------------------------------------------------------
    def _run(self) -> None:
        q = self.query
        timeout = q.nvml.NVML_ERROR_TIMEOUT
        last_error: str | None = None
        while not self._stop.is_set():
            errs: list[str] = []
            try:
                data = q.call("system", "xid_wait", "nvmlEventSetWait", self._set, self.wait_ms,
                              empty=(timeout,), errors=errs)
            except GpuLost as exc:  # a lost GPU makes the wait fail; the collection cycle reports it
                data, errs = NA, [str(exc)]
            if errs:
                if errs[-1] != last_error:  # log a repeating failure once, not every wait
                    log.warning("XID event wait failed: %s", errs[-1])
                last_error = errs[-1]
                self.thread_errors = errs[-5:]
                self._stop.wait(self.wait_ms / 1000)
                continue
            last_error = None
            if data is NA:
                continue
            self._record(data)

    def _record(self, data: Any) -> None:
        uuid = self._by_handle.get(handle_key(data.device))
        code = int(data.eventData)
        if uuid is None:
            log.warning("XID %d from an unknown device handle", code)
            return
        detail: dict[str, Any] = {"event_type": int(data.eventType)}
        gi = int(getattr(data, "gpuInstanceId", NO_INSTANCE))
        if gi != NO_INSTANCE:
            detail["gpu_instance_id"] = gi
            detail["compute_instance_id"] = int(getattr(data, "computeInstanceId", NO_INSTANCE))
        ev = Event(ts=time.time(), kind=EventKind.XID, uuid=uuid, node=self.node, code=code, detail=detail)
        with self._lock:
            self._events.append(ev)
            self._counts[(uuid, code)] += 1
            self._last[uuid] = code
            self._processed += 1
            self._lock.notify_all()
        log.warning("XID %d on %s", code, uuid)

    def wait_processed(self, count: int, timeout: float) -> bool:
        """Block until ``count`` events have been recorded since start (for tests and the hardware check)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._processed >= count, timeout=timeout)

    # -- collection ----------------------------------------------------------------------------
    def collect_node(self, devices: list[NvmlDevice], out: Emitter) -> None:
        with self._lock:
            events, self._events = self._events, []
            counts = dict(self._counts)
            last = dict(self._last)
        for ev in events:
            out.event(ev)
        for uuid in self._registered:
            out.sample(uuid, "xid_last", last.get(uuid, 0))
        for (uuid, code), count in sorted(counts.items()):
            out.sample(uuid, "xid_errors", count, {"xid": str(code)})

    def error(self) -> str | None:
        if self._registered and not self.thread_alive:
            return "the XID event thread is not running"
        if self.thread_errors:
            errs, self.thread_errors = self.thread_errors, []
            return "; ".join(errs)
        return None
