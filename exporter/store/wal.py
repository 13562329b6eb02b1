"""The write-ahead log: one framed, checksummed record per write.

Record (format 2, written since 2026-12): ``b"GFW2"`` | payload length (u32) | crc32 of payload (u32) |
crc32 of the 12 bytes before it (u32) | payload. The header checksum tells a torn tail (a whole,
valid header whose payload runs past the end of the file: the writer died in ``write(2)``) from
corruption (a header or payload whose checksum does not match). Format 1 (``b"GFW1"``, no header
checksum) is still read; there a length running past the end counts as a torn tail.
Payload: ts_ms (i64) | n samples (u32) | json length (u32) | json | uuid codes (i32 x n) |
series codes (i32 x n) | values (f64 x n).
The json holds what is new since the log started: ``u`` {code: uuid}, ``s`` {code: series name},
and the record's ``ev`` (events), ``lab`` (labels) and ``dev`` (changed device metadata).
Codes are declared in the log that uses them (each new log starts with the full dictionaries),
and every declaration is written twice (a dictionary-only record before the data record), so one
corrupt record never hides the names of the records after it.

Decoding never stops at a bad record: it skips the damaged bytes, resynchronises on the next
valid frame and counts what it skipped (``corrupt_records``, ``corrupt_bytes``).
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

MAGIC = b"GFW2"
MAGIC_V1 = b"GFW1"
_HEAD = struct.Struct("<4sIII")
_HEAD_V1 = struct.Struct("<4sII")
_PAY = struct.Struct("<qII")
MAX_RECORD = 1 << 30  # a length above this is a damaged header


def encode_record(ts_ms: int, ucodes: np.ndarray, scodes: np.ndarray, values: np.ndarray,
                  meta: dict[str, Any] | None) -> bytes:
    js = json.dumps(meta, separators=(",", ":")).encode() if meta else b""
    payload = b"".join((_PAY.pack(ts_ms, len(values), len(js)), js,
                        ucodes.astype("<i4", copy=False).tobytes(),
                        scodes.astype("<i4", copy=False).tobytes(),
                        values.astype("<f8", copy=False).tobytes()))
    head = struct.pack("<4sII", MAGIC, len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


@dataclass
class WalContents:
    """Decoded log: long arrays of samples plus events, labels and device updates.

    ``records``: intact records decoded. ``torn``: the file ends in an incomplete record (expected
    after a crash; ``torn_bytes`` long). ``corrupt_records`` / ``corrupt_bytes``: damaged records
    skipped (never expected: a disk or a person changed the file); ``problems`` says where.
    ``unnamed_samples``: samples dropped because the record declaring their names was lost.
    """

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
    torn_bytes: int = 0
    corrupt_records: int = 0
    corrupt_bytes: int = 0
    unnamed_samples: int = 0
    problems: list[str] = field(default_factory=list)
    size: int = 0

    @property
    def damaged(self) -> bool:
        """Corruption beyond a torn tail (the log must be kept, not deleted)."""
        return bool(self.corrupt_records or self.corrupt_bytes or self.unnamed_samples)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.values:
            e = np.empty(0)
            return e.astype(np.int64), e.astype(np.int32), e.astype(np.int32), e
        return (np.concatenate(self.ts), np.concatenate(self.ucodes), np.concatenate(self.scodes),
                np.concatenate(self.values))

    def describe(self) -> str:
        """One line: what was recovered and what was lost."""
        parts = [f"{self.records} records intact"]
        if self.corrupt_records or self.corrupt_bytes:
            parts.append(f"{self.corrupt_records} corrupt records ({self.corrupt_bytes} bytes) skipped")
        if self.unnamed_samples:
            parts.append(f"{self.unnamed_samples} samples without names dropped")
        if self.torn:
            parts.append(f"torn tail of {self.torn_bytes} bytes dropped")
        return ", ".join(parts)


def _frame_at(data: bytes, pos: int) -> tuple[str, int]:
    """What starts at ``pos``: ("ok", end), ("torn", 0) or ("bad", 0)."""
    end = len(data)
    magic = data[pos:pos + 4]
    if magic == MAGIC:
        if pos + _HEAD.size > end:
            return "torn", 0
        _m, length, crc, hcrc = _HEAD.unpack_from(data, pos)
        if zlib.crc32(data[pos:pos + 12]) != hcrc or length > MAX_RECORD:
            return "bad", 0
        start = pos + _HEAD.size
    elif magic == MAGIC_V1:
        if pos + _HEAD_V1.size > end:
            return "torn", 0
        _m, length, crc = _HEAD_V1.unpack_from(data, pos)
        if length > MAX_RECORD:
            return "bad", 0
        start = pos + _HEAD_V1.size
    else:
        if end - pos < 4 and (MAGIC.startswith(magic) or MAGIC_V1.startswith(magic)):
            return "torn", 0
        return "bad", 0
    if start + length > end:
        return "torn", 0
    if zlib.crc32(data[start:start + length]) != crc or length < _PAY.size:
        return "bad", 0
    return "ok", start + length


def _next_frame(data: bytes, pos: int) -> tuple[int, int]:
    """The next intact frame at or after ``pos``: (offset, frames with a valid header skipped); -1 if none."""
    headers = 0
    i = pos
    while True:
        a, b = data.find(MAGIC, i), data.find(MAGIC_V1, i)
        cands = [x for x in (a, b) if x >= 0]
        if not cands:
            return -1, headers
        j = min(cands)
        kind, _ = _frame_at(data, j)
        if kind == "ok":
            return j, headers
        if data[j:j + 4] == MAGIC and j + 16 <= len(data) and \
                zlib.crc32(data[j:j + 12]) == struct.unpack_from("<I", data, j + 12)[0]:
            headers += 1  # a record whose header is intact but whose payload is damaged
        i = j + 1


def _apply(out: WalContents, payload: bytes) -> None:
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


def decode(data: bytes) -> WalContents:
    """Decode every intact record; skip (and count) damaged ones; drop (and flag) a torn tail."""
    out = WalContents(size=len(data))
    pos, end = 0, len(data)
    while pos < end:
        kind, nxt = _frame_at(data, pos)
        if kind == "ok":
            head = _HEAD.size if data[pos:pos + 4] == MAGIC else _HEAD_V1.size
            _apply(out, data[pos + head:nxt])
            out.records += 1
            pos = nxt
            continue
        resync, headers = _next_frame(data, pos + 1)
        if kind == "torn" and resync < 0:
            out.torn, out.torn_bytes = True, end - pos
            break
        stop = end if resync < 0 else resync
        lost = max(1, headers + (1 if kind == "torn" else 0))
        out.corrupt_records += lost
        out.corrupt_bytes += stop - pos
        out.problems.append(f"bytes {pos}..{stop} damaged (about {lost} record{'s' if lost > 1 else ''})")
        pos = stop
    _drop_unnamed(out)
    return out


def _drop_unnamed(out: WalContents) -> None:
    """Drop samples whose uuid or series code no intact record names (their declaration was lost)."""
    if not out.values:
        return
    nu = max(out.uuids, default=-1) + 1
    ns = max(out.series, default=-1) + 1
    uok = np.zeros(nu + 1, bool)
    sok = np.zeros(ns + 1, bool)
    uok[list(out.uuids)] = True
    sok[list(out.series)] = True
    for i, (uc, sc) in enumerate(zip(out.ucodes, out.scodes, strict=True)):
        good = uok[np.clip(uc, 0, nu)] & sok[np.clip(sc, 0, ns)] & (uc >= 0) & (sc >= 0)
        if not good.all():
            out.unnamed_samples += int((~good).sum())
            out.ucodes[i], out.scodes[i] = uc[good], sc[good]
            out.values[i], out.ts[i] = out.values[i][good], out.ts[i][good]
    if out.unnamed_samples:
        out.problems.append(f"{out.unnamed_samples} samples whose names were in a lost record dropped")


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
