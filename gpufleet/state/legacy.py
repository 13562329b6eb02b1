"""A one-time import of the JSON state files older gpufleet versions wrote (``allocator/queue.json``,
``alerting/silences.json``, ``alerting/state.json``): read into the database at start when the database
holds none of that state yet, then renamed to ``<name>.imported`` so they are never read again."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from gpufleet.exporter.errors import InputError

log = logging.getLogger("gpufleet.state")

SUFFIX = ".imported"


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None when it does not exist; a corrupt file is an :class:`InputError` (kept)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text or "null")
    except json.JSONDecodeError as exc:
        raise InputError(f"cannot import {path}: not valid JSON ({exc.msg})", path=str(path),
                         line=exc.lineno) from None


def retire(path: Path) -> Path:
    """Rename an imported file out of the way (``queue.json`` -> ``queue.json.imported``)."""
    done = path.with_name(path.name + SUFFIX)
    os.replace(path, done)
    log.info("imported %s into the database; renamed it to %s", path, done)
    return done
