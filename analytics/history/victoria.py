"""History readers for InfluxDB line-protocol backends: VictoriaMetrics and InfluxDB 2.

The exporter's InfluxDB sink writes one point per (family, device, labels, time) to measurement
``gpufleet_<family>`` with the catalogue field ids as fields and the device identity as tags.

* :class:`VictoriaReader` reads VictoriaMetrics through its Prometheus-compatible query API.
  VictoriaMetrics names a line-protocol field as the series ``<measurement>_<field>``, so
  ``temperature_gpu`` is ``gpufleet_thermal_temperature_gpu``. Raw samples come from
  ``/api/v1/export`` (exact stored values); buckets from ``query_range`` with MetricsQL's
  ``<agg>_over_time`` (windows are left-open, ``(t - r, t]``). VictoriaMetrics keeps up to 12
  significant decimal digits of a value, so compare its answers with a relative tolerance of 1e-12.
* :class:`InfluxReader` reads InfluxDB 2 (and InfluxDB 3's v2-compatible API) with Flux through
  influxdb-client: ``range`` + ``filter`` + ``aggregateWindow(timeSrc: "_start")``, which buckets
  exactly as the embedded store does. No InfluxDB server runs here, so only the query text it
  builds and its error when the server is unreachable are tested, not its answers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from gpufleet.analytics.history.base import (
    HistoryReader,
    TimeLike,
    check_args,
    frame_from_series,
    series_column,
)
from gpufleet.analytics.history.prometheus import PrometheusReader
from gpufleet.exporter.catalogue import Metric, catalogue
from gpufleet.exporter.errors import BackendUnavailable, ConfigError

FLUX_FUNCS = {"mean": "mean", "min": "min", "max": "max", "last": "last"}


def measurement(m: Metric) -> str:
    return f"gpufleet_{m.family}"


class VictoriaReader(PrometheusReader):
    """VictoriaMetrics (single node or vmselect URL) fed by the exporter's InfluxDB sink."""

    name = "victoria"
    backend = "VictoriaMetrics"

    def __init__(self, url: str, **kwargs: Any) -> None:
        kwargs.setdefault("max_points", 30_000)  # -search.maxPointsPerTimeseries default
        super().__init__(url, names="native", **kwargs)

    def series_name(self, m: Metric) -> str | None:
        return f"{measurement(m)}_{m.field}"

    def left_open_ranges(self) -> bool:
        return True

    def _range_params(self, expr: str, start_ms: int, end_ms: int, step_ms: int) -> dict[str, str]:
        return {**super()._range_params(expr, start_ms, end_ms, step_ms), "nocache": "1"}

    def _raw(self, sel: str, lo_ms: int, hi_ms: int) -> Iterator[tuple[dict[str, str], np.ndarray, np.ndarray]]:
        for a in range(lo_ms, hi_ms, self.raw_chunk_ms):
            b = min(a + self.raw_chunk_ms, hi_ms)
            # export's range is closed: [start, end]
            r = self._get("/api/v1/export", {"match[]": sel, "start": f"{a / 1000:.3f}",
                                             "end": f"{(b - 1) / 1000:.3f}"})
            for line in r.text.splitlines():
                if not line.strip():
                    continue
                s = json.loads(line)
                ts = np.asarray(s["timestamps"], dtype=np.int64)
                vals = np.asarray(s["values"], dtype=np.float64)
                order = np.argsort(ts, kind="stable")
                yield s["metric"], ts[order], vals[order]


def _rfc3339(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _flux_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxReader(HistoryReader):
    """InfluxDB 2 / 3 (v2 API) with Flux through influxdb-client."""

    name = "influxdb"

    def __init__(self, url: str, token: str | None, org: str = "gpufleet", bucket: str = "gpufleet",
                 timeout: float = 30.0) -> None:
        from influxdb_client import InfluxDBClient

        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self.client = InfluxDBClient(url=self.url, token=token or "", org=org, timeout=int(timeout * 1000))

    def flux(self, field: str, lo_ms: int, hi_ms: int, step_ms: int | None, uuids: Sequence[str] | None,
             agg: str) -> str:
        """The Flux query for one field (public so that it can be checked without a server)."""
        try:
            m = catalogue().field(field)
        except KeyError:
            raise ConfigError(f"unknown field {field!r}: not in the metric catalogue") from None
        lines = [f"from(bucket: {_flux_str(self.bucket)})",
                 f"  |> range(start: {_rfc3339(lo_ms)}, stop: {_rfc3339(hi_ms)})",
                 f"  |> filter(fn: (r) => r._measurement == {_flux_str(measurement(m))} and "
                 f"r._field == {_flux_str(field)})"]
        if uuids is not None:
            cond = " or ".join(f"r.uuid == {_flux_str(u)}" for u in uuids) or "false"
            lines.append(f"  |> filter(fn: (r) => {cond})")
        if step_ms is not None:
            lines.append(f"  |> aggregateWindow(every: {step_ms}ms, fn: {FLUX_FUNCS[agg]}, createEmpty: false, "
                         'timeSrc: "_start")')
        keep = ", ".join(_flux_str(c) for c in ["_time", "_value", "uuid", *m.labels])
        lines.append(f"  |> keep(columns: [{keep}])")
        return "\n".join(lines)

    def read(self, fields: Sequence[str], since: TimeLike, until: TimeLike, step: float | None = None,
             uuids: Sequence[str] | None = None, agg: str = "mean") -> pd.DataFrame:
        fields, lo, hi = check_args(fields, since, until, step, agg)
        lo_ms, hi_ms = round(lo * 1000), round(hi * 1000)
        step_ms = None if step is None else round(step * 1000)
        pieces: list[tuple[str, str, np.ndarray, np.ndarray]] = []
        api = self.client.query_api()
        for field in fields:
            m = catalogue().field(field) if field in catalogue() else None
            query = self.flux(field, lo_ms, hi_ms, step_ms, uuids, agg)
            try:
                tables = api.query(query, org=self.org)
            except Exception as exc:  # urllib3 / ApiException: the server is not there or refused
                raise BackendUnavailable(f"InfluxDB at {self.url} failed the query: {exc}") from None
            groups: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
            for table in tables:
                for rec in table.records:
                    v = rec.values
                    labels = {k: str(v[k]) for k in (m.labels if m else ()) if v.get(k) is not None}
                    key = (str(v.get("uuid")), series_column(field, labels))
                    ts_list, val_list = groups.setdefault(key, ([], []))
                    ts_list.append(round(rec.get_time().timestamp() * 1000))
                    val_list.append(float(rec.get_value()))
            for (uuid, col), (ts_list, val_list) in groups.items():
                pieces.append((uuid, col, np.asarray(ts_list, np.int64), np.asarray(val_list)))
        return frame_from_series(pieces)

    def close(self) -> None:
        self.client.close()
