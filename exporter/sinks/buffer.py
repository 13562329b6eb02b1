"""A bounded, ordered, on-disk queue of text lines that survives a restart of the process.

Lines are appended to segment files ``seg-<first line number>.lp``; ``cursor`` holds the absolute number
of the first line not yet delivered (written atomically: temp file, fsync, rename). A consumer
:meth:`peek`-s a batch, sends it, then :meth:`commit`-s it, so a line is removed only after it was
delivered (and delivered once: the cursor only moves forward). When the buffer is full the overflow
policy drops the oldest pending lines or the newest incoming ones, and counts them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gpufleet.exporter.errors import ConfigError

OVERFLOW_POLICIES = ("drop_oldest", "drop_newest")


@dataclass(slots=True)
class _Segment:
    first: int
    count: int
    path: Path


class DiskBuffer:
    def __init__(self, path: Path | str, max_lines: int, overflow: str = "drop_oldest",
                 segment_lines: int = 10_000) -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise ConfigError(f"overflow policy must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        if max_lines < 1:
            raise ConfigError("the buffer must hold at least one point")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.max_lines = max_lines
        self.overflow = overflow
        self.segment_lines = segment_lines
        self.dropped = 0
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._cursor = 0
        self._fh: BinaryIO | None = None
        self._recover()

    # -- persistence --------------------------------------------------------------------------
    def _recover(self) -> None:
        cursor_file = self.path / "cursor"
        if cursor_file.exists():
            text = cursor_file.read_text().strip()
            self._cursor = int(text) if text.isdigit() else 0
        for p in sorted(self.path.glob("seg-*.lp"), key=lambda q: int(q.stem[4:])):
            data = p.read_bytes()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):  # a torn write at a crash: drop the partial last line
                with p.open("r+b") as fh:
                    fh.truncate(complete)
            count = data.count(b"\n", 0, complete)
            first = int(p.stem[4:])
            if first + count <= self._cursor or count == 0:
                p.unlink()
                continue
            self._segments.append(_Segment(first, count, p))
        if self._segments and self._cursor < self._segments[0].first:
            self._cursor = self._segments[0].first

    def _write_cursor(self) -> None:
        tmp = self.path / "cursor.tmp"
        with tmp.open("w") as fh:
            fh.write(str(self._cursor))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / "cursor")

    def _end(self) -> int:
        if self._segments:
            last = self._segments[-1]
            return last.first + last.count
        return self._cursor

    def _open_tail(self) -> _Segment:
        last = self._segments[-1] if self._segments else None
        if last is None or last.count >= self.segment_lines:
            if self._fh is not None:
                self._fh.close()
            first = self._end()
            seg = _Segment(first, 0, self.path / f"seg-{first:015d}.lp")
            self._segments.append(seg)
            self._fh = seg.path.open("ab")
            return seg
        if self._fh is None:
            self._fh = last.path.open("ab")
        return last

    # -- producer -----------------------------------------------------------------------------
    def append(self, lines: list[str]) -> int:
        """Append lines (no newlines inside); returns how many were dropped by the overflow policy."""
        if not lines:
            return 0
        with self._lock:
            dropped = 0
            over = self._pending() + len(lines) - self.max_lines
            if over > 0:
                if self.overflow == "drop_newest":
                    keep = max(0, len(lines) - over)
                    dropped = len(lines) - keep
                    lines = lines[:keep]
                else:
                    from_new = max(0, over - self._pending())  # more new lines than the buffer holds
                    lines = lines[from_new:]
                    self._advance(over - from_new)
                    dropped = over
                self.dropped += dropped
            i = 0
            while i < len(lines):
                seg = self._open_tail()
                n = min(len(lines) - i, self.segment_lines - seg.count)
                assert self._fh is not None
                self._fh.write("".join(line + "\n" for line in lines[i:i + n]).encode())
                seg.count += n
                i += n
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            if dropped and self.overflow == "drop_oldest":
                self._write_cursor()
            return dropped

    # -- consumer -----------------------------------------------------------------------------
    def _pending(self) -> int:
        return self._end() - self._cursor

    def pending(self) -> int:
        with self._lock:
            return self._pending()

    def peek(self, n: int) -> tuple[int, list[str]]:
        """Up to ``n`` oldest pending lines and the absolute number of the first one."""
        with self._lock:
            start = self._cursor
            out: list[str] = []
            for seg in self._segments:
                if seg.first + seg.count <= start or len(out) >= n:
                    continue
                skip = max(0, start + len(out) - seg.first)
                with seg.path.open("rb") as fh:
                    for lineno, raw in enumerate(fh):
                        if lineno >= seg.count or len(out) >= n:
                            break
                        if lineno >= skip:
                            out.append(raw.decode().rstrip("\n"))
            return start, out

    def commit(self, start: int, n: int) -> None:
        """Mark lines [start, start + n) delivered (a no-op for lines already dropped)."""
        with self._lock:
            new = max(self._cursor, start + n)
            if new != self._cursor:
                self._advance(new - self._cursor)
                self._write_cursor()

    def _advance(self, n: int) -> None:
        self._cursor = min(self._cursor + n, self._end())
        while self._segments and self._segments[0].first + self._segments[0].count <= self._cursor:
            seg = self._segments[0]
            if len(self._segments) == 1 and self._fh is not None:
                self._fh.close()
                self._fh = None
            seg.path.unlink(missing_ok=True)
            self._segments.pop(0)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            self._write_cursor()
