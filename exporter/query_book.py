"""What every vendor-library choke point (NVML, AMD SMI) records: fields a device does not give
(asked once, then left out), library functions that are missing (logged once), and unexpected errors
since the collector last asked (they fail that collector's run)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class QueryBook:
    library = "library"
    """Name used in the log lines ("NVML", "amdsmi")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.unsupported: dict[tuple[str, str], str] = {}
        """(uuid, field) -> why it is absent (NotSupported, NoPermission, hidden by hypervisor...)."""
        self.missing_functions: set[str] = set()
        self.errors: list[str] = []
        """Unexpected errors since the last :meth:`take_errors` (read per collector run)."""
        self.calls = 0

    def is_unsupported(self, uuid: str, field: str) -> bool:
        return (uuid, field) in self.unsupported

    def mark_unsupported(self, uuid: str, field: str, why: str = "NotSupported") -> None:
        with self._lock:
            if (uuid, field) not in self.unsupported:
                self.unsupported[(uuid, field)] = why
                log.info("%s: %s not available (%s); series left out", uuid, field, why)

    def take_errors(self) -> list[str]:
        with self._lock:
            out, self.errors = self.errors, []
        return out

    def forget_device(self, uuid: str) -> None:
        """Drop what was learnt about a device (after it recovers, the library may answer differently)."""
        with self._lock:
            for key in [k for k in self.unsupported if k[0] == uuid]:
                del self.unsupported[key]

    def _function_missing(self, fn: str) -> None:
        with self._lock:
            if fn in self.missing_functions:
                return
            self.missing_functions.add(fn)
        log.warning("%s function %s is not in this library; its fields are left out", self.library, fn)
