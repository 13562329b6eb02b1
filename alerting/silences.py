"""Silences: label matchers with a start and an end time, stored in one JSON file.

The CLI (``gpufleet alerting silence add/list/expire``), the API and the engine share the file; the
engine re-reads it when it changes. A silenced alert keeps its state but sends no notification.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpufleet.exporter.errors import ConfigError, InputError, NotFound

_MATCHER = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    value: str
    op: str = "="  # = | != | =~

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        return re.fullmatch(self.value, got) is not None

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def parse_matcher(text: str) -> Matcher:
    """'node=gpu-01', 'alertname=~Gpu.*', 'severity!=info' -> Matcher (ConfigError when malformed)."""
    m = _MATCHER.match(text)
    if not m:
        raise ConfigError(f"matcher {text!r} must look like label=value, label!=value or label=~regex")
    name, op, value = m.groups()
    value = value.strip('"')
    if op == "=~":
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(f"matcher {text!r}: bad regular expression: {exc}") from None
    return Matcher(name, value, op)


@dataclass(slots=True)
class Silence:
    id: str
    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    expired_by: str = field(default="")

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["matchers"] = [str(m) for m in self.matchers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Silence:
        return cls(id=str(d["id"]), matchers=[parse_matcher(str(m)) for m in d["matchers"]],  # type: ignore[attr-defined]
                   starts_at=float(d["starts_at"]), ends_at=float(d["ends_at"]),  # type: ignore[arg-type]
                   created_by=str(d.get("created_by", "")), comment=str(d.get("comment", "")),
                   expired_by=str(d.get("expired_by", "")))


class SilenceStore:
    """Silences in ``path`` (JSON). Reads are cheap: the file is only re-parsed when it changed."""

    def __init__(self, path: Path | str, keep_expired_s: float = 86400.0) -> None:
        self.path = Path(path)
        self.keep_expired_s = keep_expired_s
        self._stamp: tuple[float, int] | None = None
        self._silences: list[Silence] = []

    def _load(self) -> list[Silence]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._silences = None, []
            return self._silences
        stamp = (st.st_mtime, st.st_size)
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8") or "[]")
                self._silences = [Silence.from_dict(d) for d in raw]
            except (ValueError, KeyError, TypeError, ConfigError) as exc:
                raise InputError(f"silence file is corrupt: {exc}", path=str(self.path)) from None
            self._stamp = stamp
        return self._silences

    def _save(self, silences: list[Silence]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".silences-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump([s.to_dict() for s in silences], fh, indent=1)
        os.replace(tmp, self.path)
        self._stamp = None

    def all(self) -> list[Silence]:
        return list(self._load())

    def active(self, now: float) -> list[Silence]:
        return [s for s in self._load() if s.active(now)]

    def add(self, matchers: list[Matcher], starts_at: float, ends_at: float, *, created_by: str = "",
            comment: str = "", now: float) -> Silence:
        if not matchers:
            raise ConfigError("a silence needs at least one matcher (e.g. node=gpu-01)")
        if ends_at <= starts_at:
            raise ConfigError("a silence must end after it starts")
        s = Silence(secrets.token_hex(6), list(matchers), starts_at, ends_at, created_by, comment)
        kept = [x for x in self._load() if x.ends_at + self.keep_expired_s > now]
        self._save([*kept, s])
        return s

    def expire(self, silence_id: str, now: float, by: str = "") -> Silence:
        silences = self.all()
        for s in silences:
            if s.id == silence_id:
                s.ends_at = min(s.ends_at, now)
                s.starts_at = min(s.starts_at, s.ends_at)
                s.expired_by = by
                self._save(silences)
                return s
        raise NotFound(f"no silence with id {silence_id!r}")

    def silencing(self, labels: dict[str, str], now: float) -> Silence | None:
        for s in self._load():
            if s.active(now) and s.matches(labels):
                return s
        return None
