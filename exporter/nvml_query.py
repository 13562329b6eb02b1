"""The one choke point every NVML call goes through.

``NvmlQuery.call(uuid, field, "nvmlDeviceGetPowerUsage", handle)`` returns the value or :data:`NA`:

* ``NotSupported`` (and ``NoPermission``) is recorded once per (device, field); the call is not
  repeated for that pair and the caller leaves the series out (never zero). On a vGPU guest
  (uuid in :attr:`NvmlQuery.guests`) the reason recorded is "hidden by hypervisor".
* ``FunctionNotFound`` (an older driver lacks the symbol) is logged once per function and the
  function is not called again.
* ``GPU_IS_LOST`` / ``RESET_REQUIRED`` raise :class:`GpuLost`; the source marks the device down.
* Any other NVML error returns NA and is remembered in :attr:`NvmlQuery.errors` so the running
  collector reports ``success=0`` with the error text.

The module object is injected (``nvml``), so tests hand in a scripted fake ``pynvml``. Calls may
come from the collection thread and the XID event thread, so the bookkeeping takes a lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from gpufleet.exporter.query_book import QueryBook

log = logging.getLogger(__name__)


class _NotAvailable:
    """The value of a call whose answer must be left out."""

    _instance: _NotAvailable | None = None

    def __new__(cls) -> _NotAvailable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NA"


NA: Final = _NotAvailable()


class GpuLost(Exception):
    """A call returned GPU_IS_LOST (or RESET_REQUIRED): the device has fallen off the bus."""

    def __init__(self, uuid: str, reason: str) -> None:
        super().__init__(f"{uuid}: {reason}")
        self.uuid = uuid
        self.reason = reason


def text(value: Any) -> str:
    """NVML strings arrive as str or bytes depending on the binding's version."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\x00").strip()
    return str(value).strip()


HIDDEN_BY_HYPERVISOR: Final = "hidden by hypervisor"
"""Why a field is absent on a vGPU guest: the guest driver refuses what the hypervisor does not pass on."""


class NvmlQuery(QueryBook):
    """Wraps an NVML module (``pynvml`` or a fake with the same names)."""

    library = "NVML"

    def __init__(self, nvml: Any) -> None:
        super().__init__()
        self.nvml = nvml
        self._lost_codes = {nvml.NVML_ERROR_GPU_IS_LOST}
        reset = getattr(nvml, "NVML_ERROR_RESET_REQUIRED", None)
        if reset is not None:
            self._lost_codes.add(reset)
        self._absent_codes = {nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_NO_PERMISSION}
        self.guests: set[str] = set()
        """uuids of vGPU guest devices: what NVML refuses there is recorded as hidden by the hypervisor."""

    # -- bookkeeping ---------------------------------------------------------------------------
    def mark_unsupported(self, uuid: str, field: str, why: str = "NotSupported") -> None:
        super().mark_unsupported(uuid, field, HIDDEN_BY_HYPERVISOR if uuid in self.guests else why)

    # -- calls ---------------------------------------------------------------------------------
    def call(self, uuid: str, field: str, fn: str, *args: Any, empty: Iterable[int] = (),
             errors: list[str] | None = None, **kwargs: Any) -> Any:
        """Call ``nvml.<fn>(*args)`` for ``field`` of device ``uuid``; NA when the value is absent.

        ``empty``: NVML return codes that mean "nothing to report this time" (e.g. NOT_FOUND from
        nvmlDeviceGetProcessUtilization when no sample is newer than the timestamp): NA, not recorded.
        ``errors``: where unexpected errors go (default :attr:`errors`; the XID thread keeps its own).
        """
        # a keyword variant (version=...) may be missing while the plain function exists
        fn_key = f"{fn}({','.join(sorted(kwargs))})" if kwargs else fn
        if (uuid, field) in self.unsupported or fn_key in self.missing_functions:
            return NA
        func = getattr(self.nvml, fn, None)
        if func is None:
            self._function_missing(fn_key)
            return NA
        self.calls += 1
        try:
            return func(*args, **kwargs)
        except self.nvml.NVMLError as exc:
            return self._failed(uuid, field, fn, fn_key, exc, empty, errors)

    def read(self, uuid: str, field: str, fn: str, *args: Any) -> Any:
        """:meth:`call` without keywords: the collectors' hot path (same rules, less work per call)."""
        if (uuid, field) in self.unsupported or fn in self.missing_functions:
            return NA
        func = getattr(self.nvml, fn, None)
        if func is None:
            self._function_missing(fn)
            return NA
        self.calls += 1
        try:
            return func(*args)
        except self.nvml.NVMLError as exc:
            return self._failed(uuid, field, fn, fn, exc, (), None)

    def _failed(self, uuid: str, field: str, fn: str, fn_key: str, exc: Any, empty: Iterable[int],
                errors: list[str] | None) -> Any:
        """What an NVML error means for one call (see the module doc); raises GpuLost or returns NA."""
        code = getattr(exc, "value", None)
        if code in self._lost_codes:
            raise GpuLost(uuid, f"{fn}: {exc}") from None
        if code in self._absent_codes:
            self.mark_unsupported(uuid, field, type(exc).__name__.removeprefix("NVMLError_"))
            return NA
        if code == self.nvml.NVML_ERROR_FUNCTION_NOT_FOUND:
            self._function_missing(fn_key)
            return NA
        if code in set(empty):
            return NA
        with self._lock:
            (self.errors if errors is None else errors).append(f"{uuid} {field} {fn}: {exc}")
        log.debug("%s: %s failed: %s", uuid, fn, exc)
        return NA

    def system(self, fn: str, *args: Any) -> Any:
        """A call that is not about one device (driver version...); NA on any NVML error."""
        return self.call("system", fn, fn, *args)
