"""Jobs that arrive, occupy whole or fractional GPUs, and leave.

Three workload modes:

* ``synthetic``: arrivals, sizes, shares and durations drawn from distributions fitted to the Alibaba
  openb pod list (``openb_pod_list_default.csv``) and shipped below as parameters; per-job activity
  (utilization, SM activity, memory) fitted so the fleet matches the AcmeTrace A100 CDFs.
* ``openb``: replay of an openb pod list (creation / deletion times, GPU count, GPU share).
* ``genai``: per-GPU utilization and memory replayed minute by minute from the Alibaba GenAI trace
  (``pod_gpu_duty_cycle_anon.tar.gz`` and ``pod_gpu_memory_used_bytes_anon.tar.gz``, read with
  :mod:`tarfile` at run time); no jobs are placed in this mode.

Placement goes through the :class:`Placer` protocol; :class:`FirstFitPlacer` is the default until the
allocator's policies plug in.
"""

from __future__ import annotations

import csv
import io
import tarfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from gpufleet.exporter.errors import InputError

# ---- parameters fitted to the traces (see docs/twin.md for the commands that derive them) ----------
# openb default pod list, GPU pods only (7,064): share of pods by GPU count.
OPENB_NUM_GPU = {1: 0.9894, 2: 0.0023, 4: 0.0021, 8: 0.0062}
# Share of single-GPU pods that take a fraction of a GPU, and the distribution of that fraction.
OPENB_FRACTIONAL = 0.436
OPENB_SHARE = {0.1: 0.010, 0.2: 0.090, 0.3: 0.110, 0.4: 0.018, 0.5: 0.291, 0.6: 0.130, 0.8: 0.351}
# Pod lifetime (deletion - creation), lognormal in seconds: median 9.1 min, heavy tail.
OPENB_DURATION_LOG_MU = 6.44
OPENB_DURATION_LOG_SD = 1.90
# Job activity, calibrated against AcmeTrace Seren (A100): busy GPUs are mostly training jobs at
# 97-100 % utilization with SM activity spread 35-95 %; the rest is inference-like duty cycles whose
# distribution follows the GenAI trace's non-zero duty cycle.
TRAIN_SHARE = 0.95
TRAIN_UTIL_BETA = (40.0, 0.6)
INFER_UTIL_BETA = (1.2, 2.5)
SM_RATIO_BETA = (4.0, 2.5)
MEM_FRAC_BETA = (2.0, 1.6)
TARGET_ALLOCATION = 0.66  # share of GPU capacity busy (AcmeTrace: ~36 % of GPU samples at 0 % util)
APP_XID_PROB = 0.03  # jobs that end with an application XID (13, 31 or 43)


@dataclass(slots=True)
class Job:
    id: str
    n_gpus: int
    share: float  # share of each GPU (1.0 = whole GPU)
    submit: float
    duration: float
    util: float
    sm_ratio: float
    mem_frac: float
    nvlink: float  # share of NVLink bandwidth used while active
    start: float | None = None
    end: float | None = None
    gpus: tuple[int, ...] = ()
    state: str = "queued"  # queued, running, done, interrupted, failed


@dataclass(slots=True)
class PlacementState:
    """What a placer sees: free share per GPU, which GPUs are healthy, and the node of each GPU."""

    free: np.ndarray  # float share free, per GPU
    healthy: np.ndarray  # bool
    node_of: np.ndarray  # int node index per GPU
    node_slices: list[slice]  # GPUs of node i are node_slices[i]


class Placer(Protocol):
    """Choose GPUs for a job, or None to leave it queued. Must not modify ``state``."""

    def place(self, job: Job, state: PlacementState) -> list[int] | None: ...


class FirstFitPlacer:
    """Whole-GPU jobs: the first node with enough free healthy GPUs; fractional: first GPU that fits."""

    name = "first_fit"

    def place(self, job: Job, state: PlacementState) -> list[int] | None:
        if job.share < 1.0:
            ok = np.flatnonzero(state.healthy & (state.free >= job.share - 1e-9))
            return [int(ok[0])] if ok.size else None
        whole = state.healthy & (state.free >= 1.0 - 1e-9)
        for sl in state.node_slices:
            idx = np.flatnonzero(whole[sl])
            if idx.size >= job.n_gpus:
                return [int(sl.start + i) for i in idx[: job.n_gpus]]
        return None


def _choice(rng: np.random.Generator, table: dict[float, float] | dict[int, float]) -> float:
    keys = [float(k) for k in table]
    p = np.array(list(table.values()), dtype=float)
    return float(keys[int(rng.choice(len(keys), p=p / p.sum()))])


def draw_activity(rng: np.random.Generator, job: Job) -> None:
    """Fill a job's activity levels from the calibrated distributions."""
    if rng.random() < TRAIN_SHARE:
        job.util = float(rng.beta(*TRAIN_UTIL_BETA))
    else:
        job.util = float(rng.beta(*INFER_UTIL_BETA))
    job.sm_ratio = float(rng.beta(*SM_RATIO_BETA))
    job.mem_frac = float(rng.beta(*MEM_FRAC_BETA))
    job.nvlink = 0.3 if job.n_gpus > 1 else 0.01


def mean_gpu_demand() -> float:
    """Expected GPU-seconds one synthetic job asks for."""
    e_gpus = sum(k * p for k, p in OPENB_NUM_GPU.items())
    e_share = (1 - OPENB_FRACTIONAL * OPENB_NUM_GPU[1]) + OPENB_FRACTIONAL * OPENB_NUM_GPU[1] * sum(
        k * p for k, p in OPENB_SHARE.items()) / sum(OPENB_SHARE.values())
    e_dur = float(np.exp(OPENB_DURATION_LOG_MU + OPENB_DURATION_LOG_SD ** 2 / 2))
    return e_gpus * e_share * e_dur


class JobSource(Protocol):
    def arrivals(self, t0: float, t1: float) -> list[Job]: ...


class SyntheticJobs:
    """Poisson arrivals sized to keep ``target`` of the fleet's GPU capacity busy."""

    def __init__(self, n_gpus: int, seed: int, target: float = TARGET_ALLOCATION,
                 max_gpus_per_job: int = 8) -> None:
        self.rng = np.random.default_rng([seed, 2])
        self.rate = target * n_gpus / mean_gpu_demand()
        self.max_gpus = max_gpus_per_job
        self._n = 0

    def arrivals(self, t0: float, t1: float) -> list[Job]:
        rng = self.rng
        k = int(rng.poisson(self.rate * (t1 - t0)))
        times = np.sort(rng.uniform(t0, t1, size=k))
        out = []
        for t in times:
            n = min(int(_choice(rng, OPENB_NUM_GPU)), self.max_gpus)
            share = 1.0
            if n == 1 and rng.random() < OPENB_FRACTIONAL:
                share = _choice(rng, OPENB_SHARE)
            dur = float(rng.lognormal(OPENB_DURATION_LOG_MU, OPENB_DURATION_LOG_SD))
            job = Job(f"job-{self._n:07d}", n, share, float(t), max(dur, 30.0), 0, 0, 0, 0)
            draw_activity(rng, job)
            self._n += 1
            out.append(job)
        return out


class OpenbReplay:
    """Replay an openb pod list: pod times are offset so the first GPU pod arrives at ``start``."""

    def __init__(self, path: str | Path, start: float, seed: int, max_gpus_per_job: int = 8) -> None:
        self.rng = np.random.default_rng([seed, 3])
        path = Path(path)
        need = ("name", "num_gpu", "gpu_milli", "creation_time", "deletion_time")
        rows: list[tuple[float, float, int, float, str]] = []
        try:
            fh = path.open(newline="", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read pod list: {exc.strerror}", path=str(path)) from None
        with fh:
            reader = csv.DictReader(fh)
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"expected openb pod list columns {', '.join(need)}; missing "
                                 f"{', '.join(missing)}", path=str(path), line=1)
            for lineno, r in enumerate(reader, start=2):
                vals = {}
                for c in ("num_gpu", "gpu_milli", "creation_time", "deletion_time"):
                    raw = (r.get(c) or "").strip()
                    try:
                        vals[c] = float(raw)
                    except ValueError:
                        raise InputError(f"expected a number, got {raw!r}", path=str(path), line=lineno,
                                         column=c) from None
                if vals["num_gpu"] <= 0:
                    continue
                share = 1.0 if vals["num_gpu"] > 1 or vals["gpu_milli"] <= 0 else min(vals["gpu_milli"], 1000) / 1000
                rows.append((vals["creation_time"], vals["deletion_time"], int(vals["num_gpu"]), share, r["name"]))
        if not rows:
            raise InputError("no GPU pod in the pod list", path=str(path))
        rows.sort()
        t0 = rows[0][0]
        self.jobs: list[Job] = []
        for created, deleted, n, share, pod in rows:
            job = Job(pod, min(n, max_gpus_per_job), share, start + (created - t0), max(deleted - created, 30.0),
                      0, 0, 0, 0)
            draw_activity(self.rng, job)
            self.jobs.append(job)
        self._i = 0

    def arrivals(self, t0: float, t1: float) -> list[Job]:
        out: list[Job] = []
        while self._i < len(self.jobs) and self.jobs[self._i].submit < t1:
            out.append(self.jobs[self._i])
            self._i += 1
        return out


class GenaiReplay:
    """Per-GPU duty cycle and memory, minute by minute, from the GenAI trace tarballs.

    GPU ``i`` replays container ``i mod n_containers``; the ~22.8 h series loops.
    """

    def __init__(self, folder: str | Path, n_gpus: int, seed: int) -> None:
        folder = Path(folder)
        util = self._read(folder / "pod_gpu_duty_cycle_anon.tar.gz", 0.01)
        mem = self._read(folder / "pod_gpu_memory_used_bytes_anon.tar.gz", 1.0)
        keys = sorted(set(util) & set(mem))
        if not keys:
            raise InputError("no container appears in both the duty-cycle and memory files", path=str(folder))
        rng = np.random.default_rng([seed, 4])
        order = rng.permutation(len(keys))
        n_min = max(max(len(util[k]) for k in keys), 1)
        self.util = np.zeros((n_gpus, n_min))
        self.mem = np.zeros((n_gpus, n_min))
        for g in range(n_gpus):
            k = keys[int(order[g % len(keys)])]
            self.util[g, : len(util[k])] = util[k]
            self.mem[g, : len(mem[k])] = mem[k]
        self.util = np.clip(self.util, 0.0, 1.0)

    @staticmethod
    def _read(path: Path, scale: float) -> dict[str, np.ndarray]:
        try:
            tar = tarfile.open(path, "r:gz")  # noqa: SIM115 - closed by the with below
        except (OSError, tarfile.TarError) as exc:
            raise InputError(f"cannot open trace archive: {exc}", path=str(path)) from None
        with tar:
            member = next((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".csv")), None)
            if member is None:
                raise InputError("no CSV file inside the archive", path=str(path))
            fh = tar.extractfile(member)
            assert fh is not None
            reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8"))
            where = f"{path}!{member.name}"
            for c in ("value", "timestamp_anon", "container_ip"):
                if c not in (reader.fieldnames or []):
                    raise InputError(f"expected a column {c!r}", path=where, line=1)
            series: dict[str, list[tuple[float, float]]] = {}
            t_min = float("inf")
            for lineno, r in enumerate(reader, start=2):
                try:
                    ts, v = float(r["timestamp_anon"]), float(r["value"])
                except (TypeError, ValueError):
                    col = "timestamp_anon" if not _isnum(r.get("timestamp_anon")) else "value"
                    raise InputError(f"expected a number, got {r.get(col)!r}", path=where, line=lineno,
                                     column=col) from None
                series.setdefault(r["container_ip"], []).append((ts, v * scale))
                t_min = min(t_min, ts)
        out = {}
        for k, pts in series.items():
            mins = np.array([round((t - t_min) / 60.0) for t, _ in pts], dtype=int)
            arr = np.zeros(int(mins.max()) + 1)
            arr[mins] = [v for _, v in pts]
            out[k] = arr
        return out

    def at(self, minute: int) -> tuple[np.ndarray, np.ndarray]:
        col = minute % self.util.shape[1]
        return self.util[:, col], self.mem[:, col]


def _isnum(s: str | None) -> bool:
    try:
        float(s or "")
        return True
    except ValueError:
        return False


class Cluster:
    """Running jobs and the per-GPU aggregates the physics reads (updated only when jobs change)."""

    def __init__(self, node_slices: list[slice], placer: Placer | None = None) -> None:
        n = node_slices[-1].stop if node_slices else 0
        self.node_slices = node_slices
        self.node_of = np.zeros(n, dtype=int)
        for i, sl in enumerate(node_slices):
            self.node_of[sl] = i
        self.placer: Placer = placer or FirstFitPlacer()
        self.used = np.zeros(n)  # share in use
        # Co-located jobs time-share a GPU: busy = 1 - prod(1 - u_j), kept as sums of -log(1 - u_j).
        self.util_h = np.zeros(n)
        self.sm_h = np.zeros(n)
        self.mem = np.zeros(n)  # share of memory in use
        self.nvl = np.zeros(n)
        self.procs = np.zeros(n, dtype=int)
        self.queue: deque[Job] = deque()
        self.running: dict[str, Job] = {}
        self.jobs_by_gpu: list[set[str]] = [set() for _ in range(n)]
        self.finished: list[Job] = []

    def _apply(self, job: Job, sign: int) -> None:
        idx = list(job.gpus)
        self.used[idx] += sign * job.share
        self.util_h[idx] += sign * -np.log1p(-min(job.util, 0.999))
        self.sm_h[idx] += sign * -np.log1p(-min(job.util * job.sm_ratio, 0.999))
        self.mem[idx] += sign * job.mem_frac * job.share
        self.nvl[idx] += sign * job.nvlink
        self.procs[idx] += sign
        for g in idx:
            (self.jobs_by_gpu[g].add if sign > 0 else self.jobs_by_gpu[g].discard)(job.id)
        if sign < 0:
            for arr in (self.used, self.util_h, self.sm_h, self.mem, self.nvl):
                arr[idx] = np.maximum(arr[idx], 0.0)

    @property
    def util(self) -> np.ndarray:
        return -np.expm1(-self.util_h)

    @property
    def sm(self) -> np.ndarray:
        return -np.expm1(-self.sm_h)

    def schedule(self, now: float, healthy: np.ndarray, max_tries: int = 64) -> list[Job]:
        """Try to start queued jobs (FIFO with backfill over the first ``max_tries``)."""
        started: list[Job] = []
        if not self.queue:
            return started
        state = PlacementState(np.clip(1.0 - self.used, 0.0, 1.0), healthy, self.node_of, self.node_slices)
        keep: deque[Job] = deque()
        tries = 0
        while self.queue:
            job = self.queue.popleft()
            if tries >= max_tries:
                keep.append(job)
                continue
            tries += 1
            gpus = self.placer.place(job, state)
            if gpus is None:
                keep.append(job)
                continue
            job.gpus, job.start, job.state = tuple(gpus), now, "running"
            job.end = now + job.duration
            self.running[job.id] = job
            self._apply(job, +1)
            state.free = np.clip(1.0 - self.used, 0.0, 1.0)
            started.append(job)
        self.queue = keep
        return started

    def finish_due(self, now: float) -> list[Job]:
        done = [j for j in self.running.values() if j.end is not None and j.end <= now]
        for j in done:
            self.stop(j, "done", j.end or now)
        return done

    def stop(self, job: Job, state: str, at: float) -> None:
        self._apply(job, -1)
        job.state, job.end = state, at
        self.running.pop(job.id, None)
        self.finished.append(job)

    def interrupt_gpu(self, gpu: int, at: float) -> list[Job]:
        jobs = [self.running[j] for j in list(self.jobs_by_gpu[gpu]) if j in self.running]
        for j in jobs:
            self.stop(j, "interrupted", at)
        return jobs
