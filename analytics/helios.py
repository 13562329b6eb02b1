"""Loader for the Helios "Earth" per-VC minute series (../shared/data/helios-earth-vc).

Each ``vc_sequences/<vc>_cluster_sequence_vc.csv[.gz]`` holds one row per minute with ``time``,
``running_gpu_num``, ``pending_gpu_num``, ``idle_gpu_num``, ``total_gpu_num`` ... (see the folder's
PROVENANCE.md).  Malformed files raise :class:`exporter.errors.InputError` naming the file, line and column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from gpufleet.exporter.errors import InputError

REQUIRED = ("time", "running_gpu_num", "pending_gpu_num", "idle_gpu_num", "total_gpu_num")
SUFFIX = "_cluster_sequence_vc.csv"


def vc_files(folder: str | Path) -> dict[str, Path]:
    """VC name -> file, for every per-VC sequence in ``folder`` (the dataset root or its vc_sequences/)."""
    root = Path(folder)
    sub = root / "vc_sequences"
    base = sub if sub.is_dir() else root
    if not base.is_dir():
        raise InputError("no such Helios folder", path=str(root))
    out = {}
    for f in sorted(base.iterdir()):
        if f.name.endswith(SUFFIX) or f.name.endswith(SUFFIX + ".gz"):
            out[f.name.split("_")[0]] = f
    if not out:
        raise InputError(f"no *{SUFFIX}[.gz] files", path=str(base))
    return out


def load_vc(path: str | Path) -> pd.DataFrame:
    """One VC's minute series, indexed by time, with integer GPU counts."""
    p = str(path)
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, EOFError, pd.errors.ParserError) as exc:
        raise InputError(f"cannot read CSV: {exc}", path=p) from exc
    for col in REQUIRED:
        if col not in df.columns:
            raise InputError(f"missing column {col!r}", path=p, line=1, column=col)
    times = pd.to_datetime(df["time"], errors="coerce")
    bad = times.isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(f"bad time {df['time'].iloc[i]!r}", path=p, line=i + 2, column="time")
    out = pd.DataFrame(index=pd.DatetimeIndex(times, name="time"))
    for col in df.columns:
        if col == "time":
            continue
        vals = pd.to_numeric(df[col], errors="coerce")
        bad = vals.isna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise InputError(f"bad number {df[col].iloc[i]!r}", path=p, line=i + 2, column=col)
        out[col] = vals.to_numpy()
    if not out.index.is_monotonic_increasing:
        raise InputError("time is not increasing", path=p)
    return out


def load_all(folder: str | Path, vcs: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Every VC's frame (or only ``vcs``)."""
    files = vc_files(folder)
    if vcs:
        missing = sorted(set(vcs) - set(files))
        if missing:
            raise InputError(f"no such VC(s): {', '.join(missing)}", path=str(folder))
        files = {k: files[k] for k in vcs}
    return {k: load_vc(f) for k, f in files.items()}


def field_frame(frames: dict[str, pd.DataFrame], expr: str = "running_gpu_num+pending_gpu_num") -> pd.DataFrame:
    """Wide frame (time x VC) of one field or a sum of fields (``a+b``), minute resolution."""
    cols = {}
    for vc, df in frames.items():
        total = None
        for f in expr.split("+"):
            f = f.strip()
            if f not in df.columns:
                raise InputError(f"no column {f!r} in VC {vc}", column=f)
            total = df[f] if total is None else total + df[f]
        cols[vc] = total
    return pd.DataFrame(cols).sort_index()
