"""Silences: label matchers with a start and an end time, stored in one JSON file.

A matcher is ``{name, op, value}`` with op ``=``, ``!=``, ``=~`` or ``!~``, as in Alertmanager: the same
shape in the API, in the file and (as ``name!=value`` text) on the command line.

The CLI (``gpufleet alerting silence add/list/expire``), the API and the engine share the file; the
engine re-reads it when it changes. A silenced alert keeps its state but sends no notification.

With a ``backend`` (:class:`SilenceBackend`; the service's database, ``gpufleet.state``) silences are rows
instead: each add or expiry writes one row, and reads are cached for ``refresh_s`` seconds so another
process's changes (the CLI's) are seen within that time.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gpufleet.exporter.errors import ConfigError, InputError, NotFound

OPS = ("=", "!=", "=~", "!~")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MATCHER = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@functools.lru_cache(maxsize=1024)
def _regex(value: str) -> re.Pattern[str]:
    """A matcher's regex, anchored at both ends as in Alertmanager: 'gpu-0.*' matches all of a value."""
    re.compile(value)  # valid on its own, so a value like 'a)|(.*' cannot escape the anchoring group
    return re.compile(f"(?:{value})")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher, as in Alertmanager: ``name op value`` with op ``=``, ``!=``, ``=~`` or ``!~``
    (regexes fully anchored; a missing label matches as the empty string)."""

    name: str
    value: str
    op: str = "="

    def __post_init__(self) -> None:
        if not LABEL_NAME.match(self.name):
            raise ConfigError(f"matcher label name {self.name!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
        if self.op not in OPS:
            raise ConfigError(f"matcher {self.name!r}: op {self.op!r} must be one of {', '.join(OPS)}")
        if self.op in ("=~", "!~"):
            try:
                _regex(self.value)
            except re.error as exc:
                raise ConfigError(f"matcher {self.name}{self.op}{self.value!r}: bad regular expression: {exc}") from None

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = _regex(self.value).fullmatch(got) is not None
        return hit if self.op == "=~" else not hit

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "op": self.op, "value": self.value}

    @classmethod
    def from_dict(cls, d: object) -> Matcher:
        """{"name": ..., "op": ..., "value": ...}; the text form ("node=gpu-01") of older files too."""
        if isinstance(d, str):
            return parse_matcher(d)
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not isinstance(d.get("value", ""), str):
            raise ConfigError(f"matcher {d!r} must be {{name, op, value}}")
        return cls(d["name"], d.get("value", ""), str(d.get("op", "=")))

    def __str__(self) -> str:
        # the value quoted, so the text always reads back as the same matcher (name="~x" stays exact)
        return f"{self.name}{self.op}{json.dumps(self.value)}"


def parse_matcher(text: str) -> Matcher:
    """'node=gpu-01', 'alertname=~Gpu.*', 'severity!=info', 'node!~gpu-0[12]', 'node="gpu 01"' -> Matcher
    (ConfigError when malformed or the regex is bad)."""
    m = _MATCHER.match(text)
    if not m:
        raise ConfigError(f"matcher {text!r} must look like label=value, label!=value, label=~regex or label!~regex")
    name, op, value = m.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"matcher {text!r}: bad quoted value") from None
    return Matcher(name, value, op)


def check_silence_matchers(matchers: list[Matcher]) -> None:
    """As Alertmanager: a silence needs a matcher, and one that does not match the empty string, so no
    silence mutes every alert by accident (``alertname=~.*``)."""
    if not matchers:
        raise ConfigError("a silence needs at least one matcher (e.g. node=gpu-01)")
    if all(m.matches({}) for m in matchers):
        raise ConfigError("at least one matcher of a silence must not match the empty string "
                          f"(every one of {', '.join(map(str, matchers))} matches any alert)")


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
        d["matchers"] = [m.to_dict() for m in self.matchers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Silence:
        # matchers are {name, op, value}; files written before that hold the text form, read the same way
        return cls(id=str(d["id"]), matchers=[Matcher.from_dict(m) for m in d["matchers"]],  # type: ignore[attr-defined]
                   starts_at=float(d["starts_at"]), ends_at=float(d["ends_at"]),  # type: ignore[arg-type]
                   created_by=str(d.get("created_by", "")), comment=str(d.get("comment", "")),
                   expired_by=str(d.get("expired_by", "")))


class SilenceBackend(Protocol):
    """Row storage for silences, generic over :meth:`Silence.to_dict`'s dict."""

    def load(self) -> list[dict[str, Any]]: ...
    def put(self, silence: Mapping[str, Any]) -> None: ...
    def delete_ended_before(self, t: float) -> None: ...


class SilenceStore:
    """Silences in ``path`` (JSON), or in ``backend`` rows. Reads are cheap: the file is only re-parsed when
    it changed; backend rows are re-read at most every ``refresh_s`` seconds (and after each own write)."""

    def __init__(self, path: Path | str, keep_expired_s: float = 86400.0, *, backend: SilenceBackend | None = None,
                 refresh_s: float = 2.0) -> None:
        self.path = Path(path)
        self.keep_expired_s = keep_expired_s
        self.backend = backend
        self.refresh_s = refresh_s
        self._loaded_at: float | None = None
        self._stamp: tuple[float, int] | None = None
        self._silences: list[Silence] = []

    def _load(self) -> list[Silence]:
        if self.backend is not None:
            t = time.monotonic()
            if self._loaded_at is None or t - self._loaded_at >= self.refresh_s:
                try:
                    self._silences = [Silence.from_dict(d) for d in self.backend.load()]
                except (ValueError, KeyError, TypeError, ConfigError) as exc:
                    raise InputError(f"a stored silence is corrupt: {exc}") from None
                self._loaded_at = t
            return self._silences
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

    def _put(self, silence: Silence, silences: list[Silence], now: float) -> None:
        """Store one added or changed silence (the backend writes one row; the file is rewritten)."""
        if self.backend is not None:
            self.backend.put(silence.to_dict())
            self.backend.delete_ended_before(now - self.keep_expired_s)
            self._loaded_at = None
            return
        self._save(silences)

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
        check_silence_matchers(list(matchers))
        if ends_at <= starts_at:
            raise ConfigError("a silence must end after it starts")
        s = Silence(secrets.token_hex(6), list(matchers), starts_at, ends_at, created_by, comment)
        kept = [x for x in self._load() if x.ends_at + self.keep_expired_s > now]
        self._put(s, [*kept, s], now)
        return s

    def expire(self, silence_id: str, now: float, by: str = "") -> Silence:
        silences = self.all()
        for s in silences:
            if s.id == silence_id:
                s.ends_at = min(s.ends_at, now)
                s.starts_at = min(s.starts_at, s.ends_at)
                s.expired_by = by
                self._put(s, silences, now)
                return s
        raise NotFound(f"no silence with id {silence_id!r}")

    def silencing(self, labels: dict[str, str], now: float) -> Silence | None:
        for s in self._load():
            if s.active(now) and s.matches(labels):
                return s
        return None
