"""The write-ahead log: one record per write, checksummed, so a torn tail is detected and dropped.

Record: ``b"GFW1"`` | payload length (u32) | crc32 of payload (u32) | payload.
Payload: ts_ms (i64) | n samples (u32) | json length (u32) | json | uuid codes (i32 x n) |
series codes (i32 x n) | values (f64 x n).
The json holds what is new since the log started: ``u`` {code: uuid}, ``s`` {code: series name},
and the record's ``ev`` (events), ``lab`` (labels) and ``dev`` (changed device metadata).
Codes are declared in the log that uses them (each new log starts with the full dictionaries), so
every log file decodes on its own.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"GFW1"
_HEAD = struct.Struct("<4sII")
_PAY = struct.Struct("<qII")


def encode_record(ts_ms: int, ucodes: np.ndarray, scodes: np.ndarray, values: np.ndarray,
                  meta: dict[str, Any] | None) -> bytes:
    js = json.dumps(meta, separators=(",", ":")).encode() if meta else b""
    payload = b"".join((_PAY.pack(ts_ms, len(values), len(js)), js,
                        ucodes.astype("<i4", copy=False).tobytes(),
                        scodes.astype("<i4", copy=False).tobytes(),
                        values.astype("<f8", copy=False).tobytes()))
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


@dataclass
class WalContents:
    """Decoded log: long arrays of samples plus events, labels and device updates."""

    uuids: dict[int, str] = field(default_factory=dict)
    series: dict[int, str] = field(default_factory=dict)
    ts: list[np.ndarray] = field(default_factory=list)
    ucodes: list[np.ndarray] = field(default_factory=list)
    scodes: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    records: int = 0
    torn: bool = False

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.values:
            e = np.empty(0)
            return e.astype(np.int64), e.astype(np.int32), e.astype(np.int32), e
        return (np.concatenate(self.ts), np.concatenate(self.ucodes), np.concatenate(self.scodes),
                np.concatenate(self.values))


def decode(data: bytes) -> WalContents:
    """Decode every whole, intact record; stop at the first torn or corrupt one."""
    out = WalContents()
    pos, end = 0, len(data)
    while pos + _HEAD.size <= end:
        magic, length, crc = _HEAD.unpack_from(data, pos)
        start = pos + _HEAD.size
        if magic != MAGIC or start + length > end:
            out.torn = True
            break
        payload = data[start:start + length]
        if zlib.crc32(payload) != crc:
            out.torn = True
            break
        ts_ms, n, jl = _PAY.unpack_from(payload, 0)
        p = _PAY.size
        if jl:
            meta = json.loads(payload[p:p + jl])
            for k, v in meta.get("u", {}).items():
                out.uuids[int(k)] = v
            for k, v in meta.get("s", {}).items():
                out.series[int(k)] = v
            out.events += meta.get("ev", [])
            out.labels += meta.get("lab", [])
            out.devices += meta.get("dev", [])
        p += jl
        if n:
            out.ucodes.append(np.frombuffer(payload, "<i4", n, p))
            out.scodes.append(np.frombuffer(payload, "<i4", n, p + 4 * n))
            out.values.append(np.frombuffer(payload, "<f8", n, p + 8 * n))
            out.ts.append(np.full(n, ts_ms, np.int64))
        out.records += 1
        pos = start + length
    if pos != end and not out.torn:
        out.torn = True
    return out


def read_wal(path: Path) -> WalContents | None:
    """Decode a log file; None when it has vanished (committed and removed meanwhile)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    return decode(data)


class WalWriter:
    """Appends records with one unbuffered write each (survives kill -9 of the process)."""

    def __init__(self, path: Path, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.bytes = 0

    def append(self, record: bytes) -> None:
        view = memoryview(record)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.bytes += len(record)
        if self.fsync:
            os.fsync(self.fd)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
