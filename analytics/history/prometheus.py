"""History reader over Prometheus' HTTP API (``query_range`` for buckets, range selectors for raw).

* Names: ``names="native"`` reads the catalogue's ``gpufleet_*`` series (label ``uuid``);
  ``names="dcgm"`` reads dcgm-exporter's ``DCGM_FI_*`` series (label ``UUID``) and converts their
  units back to base units with the catalogue's ``dcgm_scale``.
* Buckets: bucket ``[t, t + step)`` is ``<agg>_over_time(series[r] offset 1ms)`` evaluated at
  ``t + step``, with ``r`` chosen from the server's range semantics (closed ``[a, b]`` before
  Prometheus 3, left-open ``(a, b]`` from 3 on), so every sample lands in the same bucket as in
  the embedded store. Requests are chunked so that no series exceeds ``max_points`` points
  (Prometheus refuses more than 11,000 per series).
* Raw samples (no step): range-vector instant queries, ``raw_chunk_s`` seconds per request.
* Transport errors and 5xx answers are retried with exponential backoff; after ``retries`` the
  reader raises :class:`~exporter.errors.BackendUnavailable` naming the URL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import numpy as np
import pandas as pd
from gpufleet.analytics.history.base import (
    HistoryReader,
    TimeLike,
    check_args,
    frame_from_series,
    series_column,
)
from gpufleet.exporter.catalogue import Metric, catalogue
from gpufleet.exporter.errors import BackendUnavailable, ConfigError

FUNCS = {"mean": "avg_over_time", "min": "min_over_time", "max": "max_over_time", "last": "last_over_time"}


def _re_escape(value: str) -> str:
    return re.escape(value).replace("\\", "\\\\").replace('"', '\\"')


class PrometheusReader(HistoryReader):
    """Reads gpufleet (or dcgm-exporter) series from Prometheus or anything speaking its query API."""

    name = "prometheus"
    backend = "Prometheus"

    def __init__(self, url: str, *, names: str = "native", selector: dict[str, str] | None = None,
                 timeout: float = 30.0, retries: int = 3, backoff: float = 0.5, max_points: int = 11_000,
                 raw_chunk_s: float = 3600.0, headers: dict[str, str] | None = None) -> None:
        if names not in ("native", "dcgm"):
            raise ConfigError(f"names must be native or dcgm, got {names!r}")
        self.url = url.rstrip("/")
        self.names = names
        self.selector = dict(selector or {})
        self.retries = retries
        self.backoff = backoff
        self.max_points = max_points
        self.raw_chunk_ms = int(raw_chunk_s * 1000)
        self.client = httpx.Client(timeout=timeout, headers=headers)
        self._left_open: bool | None = None

    # ------------------------------------------------------------------ naming
    def metric(self, field: str) -> Metric:
        try:
            return catalogue().field(field)
        except KeyError:
            raise ConfigError(f"unknown field {field!r}: not in the metric catalogue") from None

    def series_name(self, m: Metric) -> str | None:
        return m.name if self.names == "native" else m.dcgm_name

    def uuid_label(self) -> str:
        return "uuid" if self.names == "native" else "UUID"

    def scale(self, m: Metric) -> float:
        return 1.0 if self.names == "native" else m.dcgm_scale

    def selector_expr(self, name: str, uuids: Sequence[str] | None) -> str:
        matchers = [f'{k}="{v}"' for k, v in sorted(self.selector.items())]
        if uuids is not None:
            matchers.append(f'{self.uuid_label()}=~"{"|".join(_re_escape(u) for u in uuids)}"')
        return name + "{" + ",".join(matchers) + "}"

    # ------------------------------------------------------------------ http
    def _get(self, path: str, params: dict[str, Any]) -> Any:
        url = f"{self.url}{path}"
        delay = self.backoff
        last: Exception | str = ""
        for attempt in range(self.retries + 1):
            try:
                r = self.client.get(url, params=params)
            except httpx.TransportError as exc:
                last = exc
            else:
                if r.status_code < 500 and r.status_code != 429:
                    if r.status_code >= 400:
                        raise ConfigError(f"{self.backend} at {self.url} rejected the query: "
                                          f"{_error_text(r)}")
                    return r
                last = f"HTTP {r.status_code}: {_error_text(r)}"
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise BackendUnavailable(f"{self.backend} at {self.url} is unreachable after {self.retries + 1} "
                                 f"attempts: {last}")

    def _data(self, path: str, params: dict[str, Any]) -> Any:
        body = self._get(path, params).json()
        if body.get("status") != "success":
            raise ConfigError(f"{self.backend} at {self.url}: {body.get('error', body)}")
        return body["data"]

    def left_open_ranges(self) -> bool:
        """True when ``x[r]`` at t covers (t - r, t] (Prometheus >= 3), False for [t - r, t]."""
        if self._left_open is None:
            version = str(self._data("/api/v1/status/buildinfo", {}).get("version", "2"))
            major = re.match(r"v?(\d+)", version)
            self._left_open = bool(major and int(major[1]) >= 3)
        return self._left_open

    # ------------------------------------------------------------------ read
    def read(self, fields: Sequence[str], since: TimeLike, until: TimeLike, step: float | None = None,
             uuids: Sequence[str] | None = None, agg: str = "mean") -> pd.DataFrame:
        fields, lo, hi = check_args(fields, since, until, step, agg)
        lo_ms, hi_ms = round(lo * 1000), round(hi * 1000)
        pieces: list[tuple[str, str, np.ndarray, np.ndarray]] = []
        for field in fields:
            m = self.metric(field)
            name = self.series_name(m)
            if name is None:
                continue  # no such series in this naming: the field is absent
            sel = self.selector_expr(name, uuids)
            results = (self._raw(sel, lo_ms, hi_ms) if step is None
                       else self._buckets(sel, lo_ms, hi_ms, round(step * 1000), agg))
            scale = self.scale(m)
            for metric, ts_ms, vals in results:
                uuid = metric.get(self.uuid_label())
                if uuid is None:
                    continue
                labels = {k: metric[k] for k in m.labels if k in metric}
                pieces.append((uuid, series_column(field, labels), ts_ms, vals / scale))
        return frame_from_series(pieces)

    def _range(self, sel: str, r_ms: int) -> str:
        return f"{sel}[{r_ms}ms] offset 1ms"

    def _raw(self, sel: str, lo_ms: int, hi_ms: int) -> Iterator[tuple[dict[str, str], np.ndarray, np.ndarray]]:
        # x[r] offset 1ms at time e covers [e - 1ms - r, e - 1ms] (closed) or (e - 1ms - r, e - 1ms].
        for a in range(lo_ms, hi_ms, self.raw_chunk_ms):
            b = min(a + self.raw_chunk_ms, hi_ms)
            r = b - a if self.left_open_ranges() else b - a - 1
            if r <= 0:
                continue
            data = self._data("/api/v1/query", {"query": self._range(sel, r), "time": f"{b / 1000:.3f}"})
            for s in data["result"]:
                yield s["metric"], *_points(s["values"])

    def _buckets(self, sel: str, lo_ms: int, hi_ms: int, step_ms: int,
                 agg: str) -> Iterator[tuple[dict[str, str], np.ndarray, np.ndarray]]:
        r = step_ms if self.left_open_ranges() else step_ms - 1
        expr = f"{FUNCS[agg]}({self._range(sel, r)})"
        first = lo_ms // step_ms * step_ms
        last = (hi_ms - 1) // step_ms * step_ms
        per = max(self.max_points - 1, 1)
        b = first
        while b <= last:
            e = min(b + per * step_ms, last)
            data = self._data("/api/v1/query_range", self._range_params(expr, b + step_ms, e + step_ms, step_ms))
            for s in data["result"]:
                ts, vals = _points(s["values"])
                yield s["metric"], ts - step_ms, vals
            b = e + step_ms

    def _range_params(self, expr: str, start_ms: int, end_ms: int, step_ms: int) -> dict[str, str]:
        return {"query": expr, "start": f"{start_ms / 1000:.3f}", "end": f"{end_ms / 1000:.3f}",
                "step": f"{step_ms / 1000:.3f}"}

    def close(self) -> None:
        self.client.close()


def _points(values: list[list[Any]]) -> tuple[np.ndarray, np.ndarray]:
    if not values:
        return np.empty(0, np.int64), np.empty(0)
    ts = np.round(np.array([v[0] for v in values], dtype=np.float64) * 1000).astype(np.int64)
    vals = np.array([float(v[1]) for v in values], dtype=np.float64)
    return ts, vals


def _error_text(r: httpx.Response) -> str:
    try:
        return str(r.json().get("error", r.text[:300]))
    except ValueError:
        return r.text[:300]
