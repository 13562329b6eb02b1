"""Helpers the command modules share."""

from __future__ import annotations

import datetime as dt
import time

from gpufleet.exporter.errors import ConfigError

_AGES = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(value: str | None, what: str = "time", *, now: float | None = None) -> float | None:
    """Unix seconds, an ISO-8601 time (naive = UTC) or an age before now (30m, 6h, 7d); None stays None.

    The CLI is the one place that reads the wall clock; library code receives the result.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text and text[-1] in _AGES and text[:-1].replace(".", "", 1).isdigit():
        return (time.time() if now is None else now) - float(text[:-1]) * _AGES[text[-1]]
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what} must be unix seconds, an ISO-8601 time or an age like 6h, got {value!r}") from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()
