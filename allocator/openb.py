"""Reader for the Alibaba GPU cluster trace v2023 ("openb") node and pod lists.

Node list: ``sn,cpu_milli,memory_mib,gpu,model``. Pod list: ``name,cpu_milli,memory_mib,num_gpu,gpu_milli``
then optionally ``gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time`` (the ``multigpu``
lists carry only the first five). A malformed row raises :class:`InputError` naming the file, the line
and the column.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gpufleet.allocator.state import FULL, NodeSpec
from gpufleet.exporter.errors import InputError

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")


def _int(value: str, path: str, line: int, column: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        v = int(float(value)) if value.strip() else 0
    except ValueError:
        raise InputError(f"{value!r} is not a number", path=path, line=line, column=column) from None
    if v < minimum or (maximum is not None and v > maximum):
        raise InputError(f"{v} is out of range", path=path, line=line, column=column)
    return v


def _rows(path: str | Path, required: tuple[str, ...]) -> tuple[str, list[tuple[int, dict[str, str]]]]:
    p = str(path)
    try:
        fh = open(p, newline="", encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=p) from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise InputError("empty file", path=p, line=1)
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(f"missing column(s) {', '.join(missing)}", path=p, line=1)
        out = []
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"expected {len(header)} fields, got {len(row)}", path=p, line=line)
            out.append((line, dict(zip(header, row, strict=True))))
    return p, out


def load_nodes(path: str | Path) -> list[NodeSpec]:
    p, rows = _rows(path, NODE_COLUMNS)
    specs = []
    for line, r in rows:
        gpus = _int(r["gpu"], p, line, "gpu", maximum=64)
        model = r["model"].strip()
        if gpus > 0 and not model:
            raise InputError("a node with GPUs needs a model", path=p, line=line, column="model")
        specs.append(NodeSpec(r["sn"], _int(r["cpu_milli"], p, line, "cpu_milli"),
                              _int(r["memory_mib"], p, line, "memory_mib"), gpus, model if gpus else ""))
    if not specs:
        raise InputError("no nodes", path=p)
    return specs


@dataclass
class Pods:
    """A pod list as arrays (one entry per pod). Times are NaN when the list has none."""

    names: list[str]
    cpu: np.ndarray
    mem: np.ndarray
    num_gpu: np.ndarray
    gpu_milli: np.ndarray
    spec: list[frozenset[str] | None]
    creation: np.ndarray
    deletion: np.ndarray
    qos: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def request_milli(self) -> np.ndarray:
        """GPU thousandths each pod asks for (0 for CPU-only pods)."""
        return self.num_gpu * self.gpu_milli

    @property
    def has_times(self) -> bool:
        return bool(np.isfinite(self.creation).any())


def load_pods(path: str | Path) -> Pods:
    p, rows = _rows(path, POD_COLUMNS)
    n = len(rows)
    cpu = np.zeros(n, dtype=np.int64)
    mem = np.zeros(n, dtype=np.int64)
    num = np.zeros(n, dtype=np.int64)
    milli = np.zeros(n, dtype=np.int64)
    creation = np.full(n, np.nan)
    deletion = np.full(n, np.nan)
    names, spec, qos = [], [], []
    for k, (line, r) in enumerate(rows):
        names.append(r["name"])
        cpu[k] = _int(r["cpu_milli"], p, line, "cpu_milli")
        mem[k] = _int(r["memory_mib"], p, line, "memory_mib")
        num[k] = _int(r["num_gpu"], p, line, "num_gpu", maximum=64)
        milli[k] = _int(r["gpu_milli"], p, line, "gpu_milli", maximum=FULL)
        if num[k] > 1 and milli[k] != FULL:
            raise InputError(f"a {num[k]}-GPU pod must take whole GPUs (gpu_milli {milli[k]})",
                             path=p, line=line, column="gpu_milli")
        if num[k] >= 1 and milli[k] == 0:
            raise InputError("a GPU pod with gpu_milli 0", path=p, line=line, column="gpu_milli")
        if num[k] == 0:
            milli[k] = 0
        s = r.get("gpu_spec", "").strip()
        spec.append(frozenset(x for x in s.split("|") if x) or None if s else None)
        qos.append(r.get("qos", ""))
        for col, arr in (("creation_time", creation), ("deletion_time", deletion)):
            v = r.get(col, "").strip()
            if v:
                arr[k] = _int(v, p, line, col)
    if n == 0:
        raise InputError("no pods", path=p)
    return Pods(names, cpu, mem, num, milli, spec, creation, deletion, qos)
