"""Private files under the data folder: the database (password hashes), the signing and audit keys, the audit
checkpoints. Folders are made 0700 and files 0600 whatever the umask is (modes are set explicitly after
creation, not left to ``mkdir``/``open``); files and folders found with group or other bits are fixed on
start, with a warning naming each one."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from gpufleet.exporter.errors import ConfigError

log = logging.getLogger("gpufleet.files")

DIR_MODE = 0o700
FILE_MODE = 0o600
# files SQLite keeps beside a database (same content: same protection)
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) mode 0700, or make an existing one 0700 (with a warning)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=DIR_MODE)
        os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask
    if not missing:
        fix_mode(path, DIR_MODE)
    return path


def fix_mode(path: Path, mode: int) -> bool:
    """Remove any permission bit beyond ``mode`` from an existing file or folder; True if it had to."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return False
    current = stat.S_IMODE(st.st_mode)
    if current & ~mode & 0o777:
        os.chmod(path, current & mode)
        log.warning("%s had mode %04o (readable or writable by others): changed to %04o", path, current,
                    current & mode)
        return True
    return False


def create_private_file(path: Path, data: bytes = b"", *, exclusive: bool = True) -> None:
    """Write a new file mode 0600 (umask-independent); ``exclusive`` refuses to replace one."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        if data:
            os.write(fd, data)
    finally:
        os.close(fd)


def touch_private(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist; fix its mode if it does."""
    try:
        create_private_file(path)
    except FileExistsError:
        fix_mode(path, FILE_MODE)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" \
            or u.database.startswith("file:") or u.query.get("mode") == "memory":
        return None
    return Path(u.database)


def secure_sqlite(url: str) -> None:
    """Before SQLite opens it: the database file exists 0600 (SQLite then gives its -wal / -shm files the
    same mode); an existing file or side file with wider modes is fixed. A missing parent folder is made
    0700; an existing one is left as it is (it may be anyone's folder)."""
    path = sqlite_path(url)
    if path is None:
        return
    try:
        if not path.parent.exists():
            private_dir(path.parent)
        touch_private(path)
        for suffix in SQLITE_SIDE_FILES:
            fix_mode(path.with_name(path.name + suffix), FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"database file {path}: cannot create it or set its mode: {exc.strerror}") from None


def secure_data_dir(data_dir: Path, private_subdirs: tuple[str, ...] = ("secrets", "audit")) -> None:
    """The data folder 0700; the folders holding keys and audit evidence 0700 and every file in them 0600."""
    private_dir(data_dir)
    for name in private_subdirs:
        sub = data_dir / name
        if not sub.exists():
            continue
        fix_mode(sub, DIR_MODE)
        for p in sub.rglob("*"):
            fix_mode(p, DIR_MODE if p.is_dir() else FILE_MODE)
    for p in data_dir.glob("*.db*"):
        if p.is_file():
            fix_mode(p, FILE_MODE)


def read_hex_key(path: Path, what: str, missing_hint: str, bad_hint: str = "written by gpufleet") -> bytes:
    """A secret key kept hex-encoded in a 0600 file (the token signing key, the audit keys).

    Every way it can be wrong is a :class:`ConfigError` naming the file: missing (``missing_hint`` says how
    to make it), unreadable, readable by others, not hex, shorter than 256 bits."""
    try:
        raw = path.read_bytes().strip()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist: {missing_hint}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{what} {path} is readable by group or others: chmod 600 {path}")
    try:
        key = bytes.fromhex(raw.decode())
    except ValueError:
        raise ConfigError(f"{what} {path} is not a hex key {bad_hint}") from None
    if len(key) < 32:
        raise ConfigError(f"{what} {path} is shorter than 256 bits")
    return key
