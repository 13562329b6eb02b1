"""The one choke point every AMD SMI (``amdsmi``) call goes through, like :mod:`exporter.nvml_query`.

``AmdQuery.call(uuid, field, "amdsmi_get_power_info", handle)`` returns the value or :data:`NA`:

* ``AMDSMI_STATUS_NOT_SUPPORTED`` / ``NOT_YET_IMPLEMENTED`` / ``NO_PERM`` is recorded once per (device,
  field); the call is not repeated for that pair and the caller leaves the series out (never zero).
* A function the installed ``amdsmi`` lacks (older ROCm) or whose symbol the library lacks
  (``FAIL_LOAD_SYMBOL``) is logged once and not called again.
* ``AMDSMI_STATUS_NOT_FOUND`` ("device not found") on a device call raises :class:`GpuLost`; the source
  marks the device down and probes it for recovery.
* ``NO_DATA`` / ``BUSY`` / ``RETRY`` / ``TIMEOUT`` mean "nothing this time": NA, not recorded.
* Any other error returns NA and is kept in :attr:`AmdQuery.errors` for the running collector's stat.

The module object is injected, so tests hand in a scripted fake (``tests/exporter/fake_amdsmi.py``).
The amdsmi Python binding reports values it could not read as the string ``"N/A"`` inside its dicts:
:func:`num` turns those into None so the collectors leave them out.
"""

from __future__ import annotations

import logging
from typing import Any

from gpufleet.exporter.nvml_query import NA, GpuLost
from gpufleet.exporter.query_book import QueryBook

log = logging.getLogger(__name__)

# amdsmi_status_t codes (amdsmi_wrapper.AMDSMI_STATUS_*); stable across ROCm 6 and 7
STATUS_NOT_SUPPORTED = 2
STATUS_NOT_YET_IMPLEMENTED = 3
STATUS_FAIL_LOAD_SYMBOL = 5
STATUS_TIMEOUT = 8
STATUS_RETRY = 9
STATUS_NO_PERM = 10
STATUS_BUSY = 30
STATUS_NOT_FOUND = 31
STATUS_NO_DATA = 40

ABSENT = {STATUS_NOT_SUPPORTED: "NotSupported", STATUS_NOT_YET_IMPLEMENTED: "NotYetImplemented",
          STATUS_NO_PERM: "NoPermission"}
EMPTY = {STATUS_NO_DATA, STATUS_BUSY, STATUS_RETRY, STATUS_TIMEOUT}
LOST = {STATUS_NOT_FOUND}


def num(value: Any) -> float | None:
    """A number from an amdsmi answer; None for "N/A", empty or non-numeric values."""
    if value is None or value is NA:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def entry_text(value: Any) -> str | None:
    """A string from an amdsmi answer; None for "N/A" or empty."""
    if value is None or value is NA:
        return None
    s = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    s = s.strip().strip("\x00").strip()
    return None if s in ("", "N/A") else s


class AmdQuery(QueryBook):
    """Wraps an ``amdsmi`` module (the real one or a fake with the same names)."""

    library = "amdsmi"

    def __init__(self, amdsmi: Any) -> None:
        super().__init__()
        self.amdsmi = amdsmi
        self._lib_error = getattr(amdsmi, "AmdSmiLibraryException", None)
        self._base_error = getattr(amdsmi, "AmdSmiException", Exception)

    # -- calls ---------------------------------------------------------------------------------
    def call(self, uuid: str, field: str, fn: str, *args: Any) -> Any:
        """Call ``amdsmi.<fn>(*args)`` for ``field`` of device ``uuid``; NA when the value is absent."""
        if (uuid, field) in self.unsupported or fn in self.missing_functions:
            return NA
        func = getattr(self.amdsmi, fn, None)
        if func is None:
            self._function_missing(fn)
            return NA
        self.calls += 1
        try:
            return func(*args)
        except self._base_error as exc:
            code = _code(exc) if self._lib_error is not None and isinstance(exc, self._lib_error) else None
            if code in LOST and uuid != "system":
                raise GpuLost(uuid, f"{fn}: {_describe(exc)}") from None
            if code in ABSENT:
                self.mark_unsupported(uuid, field, ABSENT[code])
                return NA
            if code == STATUS_FAIL_LOAD_SYMBOL:
                self._function_missing(fn)
                return NA
            if code in EMPTY:
                return NA
            with self._lock:
                self.errors.append(f"{uuid} {field} {fn}: {_describe(exc)}")
            log.debug("%s: %s failed: %s", uuid, fn, exc)
            return NA

    def system(self, fn: str, *args: Any) -> Any:
        """A call that is not about one device; NA on any amdsmi error."""
        return self.call("system", fn, fn, *args)


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "err_code", None)
    if code is None and hasattr(exc, "get_error_code"):
        code = exc.get_error_code()
    return None if code is None else abs(int(code))


def _describe(exc: BaseException) -> str:
    info = getattr(exc, "err_info", None)
    return str(info) if info else " ".join(str(exc).split())
