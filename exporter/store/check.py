"""``gpufleet history check``: verify every log and segment of a store; optionally repair it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gpufleet.exporter.store.integrity import VERIFIER, verify_file
from gpufleet.exporter.store.layout import TABLE_DIRS, TIERS, list_segments, list_wals
from gpufleet.exporter.store.wal import read_wal


@dataclass
class FileReport:
    path: str
    ok: bool
    detail: str


@dataclass
class CheckReport:
    files: list[FileReport] = field(default_factory=list)
    records_lost: int = 0
    bytes_lost: int = 0
    rows_lost: int = 0

    @property
    def damaged(self) -> list[FileReport]:
        return [f for f in self.files if not f.ok]


def check_store(path: Path) -> CheckReport:
    """Verify every write-ahead log (frames, checksums) and every segment (digest or structure)."""
    rep = CheckReport()
    for _seq, p in list_wals(path / "wal"):
        c = read_wal(p)
        if c is None:
            continue
        rel = str(p.relative_to(path))
        if c.damaged:
            rep.records_lost += c.corrupt_records
            rep.bytes_lost += c.corrupt_bytes
            rep.files.append(FileReport(rel, False, f"{c.describe()}: {'; '.join(c.problems)}"))
        else:
            rep.files.append(FileReport(rel, True, c.describe() + (" (expected after a crash)" if c.torn else "")))
    for sub in (*TIERS, *TABLE_DIRS):
        for seg in list_segments(path / sub):
            v = verify_file(seg.path)
            rel = str(seg.path.relative_to(path))
            if v.ok:
                rep.files.append(FileReport(rel, True, "no digest yet, structurally sound" if v.legacy else "digest ok"))
            else:
                rep.rows_lost += v.rows or 0
                rows = f" ({v.rows} rows)" if v.rows is not None else ""
                rep.files.append(FileReport(rel, False, v.reason + rows))
    return rep


def repair_store(path: Path) -> CheckReport:
    """Quarantine damaged segments, recover what is intact from logs (quarantining damaged logs),
    record digests of legacy segments; needs the writer lock (``Conflict`` while a writer runs)."""
    from gpufleet.exporter.store.store import HistoryStore

    before = check_store(path)
    s = HistoryStore(path, create=False, compaction=False)
    s._ensure_writer()  # takes the lock, seals legacy segments, recovers (and quarantines) logs
    try:
        for sub in (*TIERS, *TABLE_DIRS):
            VERIFIER.good(list_segments(path / sub), path)
    finally:
        s.close()
    return before
