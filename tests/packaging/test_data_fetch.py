"""`gpufleet data fetch`: pinned sources and digests, served here by a real HTTP server on loopback (a mirror
laid out as <repo>/<revision>/<path>); offline and checksum-mismatch paths give one line and keep nothing."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.cli import run
from gpufleet.datasets import DATASETS, dataset
from tests.servers import free_port, require_data


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep stderr for the command's own lines
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _publish(root: Path, name: str, *, tamper: bool = False) -> None:
    """Lay the dataset's files out as its source repository serves them (copied from ../shared/data)."""
    ds = dataset(name)
    local = require_data(ds.folder)
    for f in ds.files:
        target = root / ds.repo / ds.revision / f.source
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local / f.path, target)
        if tamper:
            target.write_bytes(target.read_bytes() + b"\n")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run(argv)
    return code, capsys.readouterr().err


def test_fetch_from_a_mirror_checks_each_digest(mirror: tuple[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    url, root = mirror
    _publish(root, "infinitehbd")
    dest = tmp_path / "data"
    code, err = _run(["data", "fetch", "infinitehbd", "--dest", str(dest), "--mirror", url], capsys)
    assert code == 0, err
    for f in dataset("infinitehbd").files:
        assert hashlib.sha256((dest / f.path).read_bytes()).hexdigest() == f.sha256
    assert err.count("sha256 ok") == 2
    # a second run keeps the verified files and downloads nothing
    code, err = _run(["data", "fetch", "infinitehbd", "--dest", str(dest), "--mirror", url], capsys)
    assert code == 0 and "fetched" not in err


def test_checksum_mismatch_is_one_line_and_keeps_nothing(mirror: tuple[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    url, root = mirror
    _publish(root, "infinitehbd", tamper=True)
    dest = tmp_path / "data"
    code, err = _run(["data", "fetch", "infinitehbd", "--dest", str(dest), "--mirror", url], capsys)
    assert code == 3  # InputError
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SHA-256 mismatch" in lines[0]
    assert not [p for p in dest.rglob("*") if p.is_file()]  # no partial or wrong file left


def test_offline_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, err = _run(["data", "fetch", "titan", "--dest", str(tmp_path / "d"), "--mirror", closed], capsys)
    assert code == 5  # BackendUnavailable
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot reach 127.0.0.1" in lines[0] and "Traceback" not in err


def test_unknown_dataset_and_missing_data_say_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["data", "fetch", "nope", "--dest", str(tmp_path)], capsys)
    assert code == 2 and "titan" in err
    code, err = _run(["failure", "evaluate", "--dataset", "titan", "--data", str(tmp_path / "none")], capsys)
    assert code != 0 and "gpufleet data fetch titan" in err and len(err.strip().splitlines()) == 1


@pytest.mark.data
def test_pinned_digests_match_the_projects_copies() -> None:
    """The table's SHA-256 of every file equals the copy in ../shared/data (helios: its gzip-compressed copy
    decompressed; the source serves the uncompressed CSV)."""
    for ds in DATASETS.values():
        local = require_data(ds.folder)
        for f in ds.files:
            path = local / f.path
            data = gzip.decompress((local / (f.path + ".gz")).read_bytes()) if not path.exists() else path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == f.sha256, (ds.name, f.path)
