"""Integrity of a store's files: segment digests, verification on read, quarantine.

When a segment is sealed its SHA-256, size and row count go to a sidecar ``<segment>.sha256``
(JSON, written atomically *before* the segment is renamed into place). Readers verify a segment
against its sidecar before using it; the result is cached per (path, inode, size, mtime), so each
file is hashed once per process. A segment written before digests existed (no sidecar) is checked
structurally (pyarrow opens it and decodes every column) and the writer records its digest then.

A damaged file is moved to ``STORE/quarantine/<tier>/`` (never deleted) with a ``.why.json``
beside it saying what was wrong and how many rows / records / bytes were lost; readers skip it and
log one warning naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.exporter.store.layout import Segment, atomic_write_bytes

log = logging.getLogger(__name__)

QUARANTINE = "quarantine"
SIDECAR_SUFFIX = ".sha256"
_CHUNK = 1 << 20


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_sidecar(tmp: Path, final: Path, fsync: bool = True) -> dict[str, Any]:
    """Record the digest of ``tmp`` (about to be renamed to ``final``) in ``final``'s sidecar."""
    import pyarrow.parquet as pq

    rec = {"sha256": file_digest(tmp), "size": tmp.stat().st_size,
           "rows": pq.ParquetFile(tmp).metadata.num_rows, "sealed": round(time.time(), 3)}
    atomic_write_bytes(sidecar(final), json.dumps(rec, sort_keys=True).encode(), fsync)
    return rec


def remove_segment(path: Path) -> None:
    """Delete a segment (retention, compaction), then its sidecar."""
    path.unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""
    legacy: bool = False  # no sidecar: checked structurally only
    rows: int | None = None


def _structural(path: Path) -> Verdict:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        rows = pf.metadata.num_rows
        for i in range(pf.num_row_groups):
            pf.read_row_group(i)
    except FileNotFoundError:
        raise
    except Exception as exc:  # any decoding failure means the file is damaged
        return Verdict(False, f"unreadable Parquet ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                       legacy=True)
    return Verdict(True, legacy=True, rows=rows)


def verify_file(path: Path) -> Verdict:
    """Check one segment against its sidecar (or structurally when it has none)."""
    try:
        rec = json.loads(sidecar(path).read_text())
    except FileNotFoundError:
        return _structural(path)
    except (OSError, ValueError):
        rec = None
    if not isinstance(rec, dict) or "sha256" not in rec:
        v = _structural(path)
        return Verdict(v.ok, v.reason or "damaged digest sidecar", legacy=True, rows=v.rows)
    size = path.stat().st_size
    if size != rec.get("size"):
        return Verdict(False, f"size {size} bytes, sealed with {rec.get('size')} (truncated or extended)",
                       rows=rec.get("rows"))
    digest = file_digest(path)
    if digest != rec["sha256"]:
        return Verdict(False, f"SHA-256 {digest[:16]}… does not match the digest sealed "
                              f"{rec['sha256'][:16]}…", rows=rec.get("rows"))
    return Verdict(True, rows=rec.get("rows"))


class Verifier:
    """Cache of verdicts per file identity (inode, size, mtime), shared by a process's readers."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int, int], Verdict]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def verdict(self, path: Path) -> Verdict:
        st = path.stat()
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with contextlib.suppress(FileNotFoundError):
            key2 = sidecar(path).stat()
            key = (*key, key2.st_mtime_ns)  # type: ignore[assignment]
        k = str(path)
        hit = self._cache.get(k)
        if hit is not None and hit[0] == key:
            return hit[1]
        v = verify_file(path)
        with self._lock:
            self._cache[k] = (key, v)
        return v

    def trust(self, path: Path) -> None:
        """Cache a file this process has just sealed as good (no need to hash it again)."""
        st = path.stat()
        key: Any = (st.st_ino, st.st_size, st.st_mtime_ns)
        with contextlib.suppress(FileNotFoundError):
            key = (*key, sidecar(path).stat().st_mtime_ns)
        with self._lock:
            self._cache[str(path)] = (key, Verdict(True))

    def good(self, segs: list[Segment], store: Path, quarantine: bool = True) -> list[Segment]:
        """The segments that verify; each bad one is quarantined (when possible) with a warning naming it."""
        out = []
        for s in segs:
            try:
                v = self.verdict(s.path)
            except FileNotFoundError:
                out.append(s)  # removed meanwhile: the read notices and starts over
                continue
            if v.ok:
                out.append(s)
                continue
            if str(s.path) not in self._warned:
                self._warned.add(str(s.path))
                log.warning("history store %s: segment %s is damaged (%s); it is skipped%s", store,
                            s.path.relative_to(store), v.reason, " and quarantined" if quarantine else "")
            if quarantine:
                quarantine_file(store, s.path, v.reason, rows=v.rows)
        return out


VERIFIER = Verifier()


def quarantine_file(store: Path, path: Path, reason: str, *, rows: int | None = None,
                    records: int | None = None, lost_bytes: int | None = None, kind: str = "segment") -> Path | None:
    """Move a damaged file (and its sidecar) to ``store/quarantine/<folder>/`` and record why; never deletes."""
    folder = store / QUARANTINE / path.parent.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / path.name
        if dest.exists():
            dest = folder / f"{path.name}.{time.time_ns()}"
        os.rename(path, dest)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a read-only reader: skip the file, leave moving it to the writer / check
        log.debug("cannot quarantine %s: %s", path, exc)
        return None
    with contextlib.suppress(FileNotFoundError, OSError):
        os.rename(sidecar(path), sidecar(dest))
    why = {"file": str(path.relative_to(store)), "kind": kind, "reason": reason, "rows_lost": rows,
           "records_lost": records, "bytes_lost": lost_bytes, "at": round(time.time(), 3)}
    atomic_write_bytes(dest.with_name(dest.name + ".why.json"), json.dumps(why, sort_keys=True).encode())
    return dest


def quarantine_summary(store: Path) -> dict[str, int]:
    """Files in quarantine and what they cost: ``files``, ``rows_lost`` (segments), ``records_lost`` (logs)."""
    files = rows = records = 0
    root = store / QUARANTINE
    if not root.is_dir():
        return {"files": 0, "rows_lost": 0, "records_lost": 0}
    for why in root.rglob("*.why.json"):
        try:
            rec = json.loads(why.read_text())
        except (OSError, ValueError):
            continue
        files += 1
        rows += int(rec.get("rows_lost") or 0)
        records += int(rec.get("records_lost") or 0)
    return {"files": files, "rows_lost": rows, "records_lost": records}
