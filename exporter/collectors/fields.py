"""nvmlDeviceGetFieldValues helper: one field id (optionally scoped, e.g. to an NVLink link)."""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.collectors.base import NvmlDevice
from gpufleet.exporter.nvml_query import NA, NvmlQuery

_UNION = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


_get = object.__getattribute__  # the binding's structs decode bytes in __getattribute__; these are numbers


def decode(fv: Any) -> float | None:
    """The value of one c_nvmlFieldValue_t, or None when its own return code is not success."""
    if int(_get(fv, "nvmlReturn")) != 0:
        return None
    return float(_get(_get(fv, "value"), _UNION.get(int(_get(fv, "valueType")), "ullVal")))


def field_values(query: NvmlQuery, dev: NvmlDevice, field: str, ids: list[Any]) -> list[float | None] | None:
    """Values of several field ids in one call; None when the whole call is unavailable."""
    values = query.call(dev.uuid, field, "nvmlDeviceGetFieldValues", dev.handle, ids)
    if values is NA:
        return None
    out = [decode(v) for v in values]
    if all(v is None for v in out):
        # every entry refused: the device does not have these fields, record once
        query.mark_unsupported(dev.uuid, field)
        return None
    return out


def field_value(query: NvmlQuery, dev: NvmlDevice, field: str, field_id: int) -> float | None:
    got = field_values(query, dev, field, [field_id])
    return got[0] if got else None
