"""The one executor interface: start a placed job, report what happened to it, stop it, read its log.

An executor never decides *where* a job runs: the queue's policy did, and :class:`RunSpec` carries the node
and GPUs it chose. It reports back through :meth:`Executor.poll` as :class:`ExecEvent` values (``running``,
``exited`` with the exit code, or ``lost`` when the engine lost the job, e.g. a dead worker); the job service
turns those into the queue's state transitions.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gpufleet.exporter.errors import GpufleetError


class ExecutorError(GpufleetError):
    """An executor could not start, stop or read a job (the message says which and why)."""


@dataclass
class RunSpec:
    """One run (attempt) of a job, as placed."""

    job_id: str
    attempt: int
    command: list[str]
    node: str
    gpu_indexes: list[int]
    gpu_uuids: list[str]
    log_path: str
    checkpoint_dir: str
    resume: bool = False
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    image: str | None = None
    gpu_type: str = ""
    max_runtime_s: float | None = None
    duration_s: float = 0.0
    """Only for the simulated executor."""
    depends_on: list[str] = field(default_factory=list)
    """Ids of jobs this one waits for (engines that keep their own DAG, e.g. Slurm, use them)."""
    cpu_milli: int = 0
    memory_mib: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSpec:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class ExecEvent:
    job_id: str
    attempt: int
    kind: Literal["running", "exited", "lost"]
    exit_code: int | None = None
    reason: str | None = None
    node: str | None = None


def job_env(run: RunSpec, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a job's process gets: the placed GPUs only, its checkpoint folder, resume flag."""
    env = dict(os.environ if base is None else base)
    env.update(run.env)
    nvidia_ids = all(u.startswith(("GPU-", "MIG-")) for u in run.gpu_uuids) and run.gpu_uuids
    env["CUDA_VISIBLE_DEVICES"] = ",".join(run.gpu_uuids if nvidia_ids else [str(i) for i in run.gpu_indexes])
    env["ROCR_VISIBLE_DEVICES"] = ",".join(str(i) for i in run.gpu_indexes)
    env["GPUFLEET_JOB_ID"] = run.job_id
    env["GPUFLEET_ATTEMPT"] = str(run.attempt)
    env["GPUFLEET_NODE"] = run.node
    env["GPUFLEET_GPU_UUIDS"] = ",".join(run.gpu_uuids)
    env["GPUFLEET_CHECKPOINT_DIR"] = run.checkpoint_dir
    env["GPUFLEET_RESUME"] = "1" if run.resume else "0"
    return env


def read_log(path: str | Path, offset: int = 0, limit: int = 1 << 20) -> tuple[str, int]:
    """Text of a log from ``offset`` (bytes) and the offset to read on from."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, offset))
            data = fh.read(limit)
    except FileNotFoundError:
        return "", offset
    return data.decode("utf-8", errors="replace"), offset + len(data)


class Executor(abc.ABC):
    """Runs placed jobs. Not thread-safe: the job service calls it under its lock."""

    name: str = "base"
    survives_close: bool = True
    """Whether runs go on after :meth:`close` (an engine's jobs do; the local executor stops its own)."""

    @abc.abstractmethod
    def start(self, run: RunSpec) -> None:
        """Start one run; raise :class:`ExecutorError` when it cannot be started at all."""

    @abc.abstractmethod
    def poll(self, now: float) -> list[ExecEvent]:
        """What happened since the last poll (and enforce stop grace periods)."""

    @abc.abstractmethod
    def stop(self, job_id: str, grace_s: float, reason: str) -> None:
        """SIGTERM (or the engine's equivalent), ``grace_s`` for a last checkpoint, then SIGKILL."""

    @abc.abstractmethod
    def active(self, job_id: str) -> bool:
        """Whether a run of this job still exists (running or still stopping)."""

    def busy_uuids(self) -> set[str]:
        """GPUs still held by runs that are stopping (a new run on them must wait)."""
        return set()

    def logs(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        return "", offset

    def handle(self, job_id: str) -> dict[str, Any] | None:
        """The engine's handle of the job's current run (JSON-able: a Slurm job id, a Kubernetes Job name, a
        Celery task id, a process group), kept in the run table so a restarted ``serve`` can reattach."""
        return None

    def reattach(self, run: RunSpec, handle: Mapping[str, Any]) -> str | None:
        """Take over a run a previous ``serve`` started (``handle`` as :meth:`handle` gave it): ``None`` when it
        is tracked again (its next :meth:`poll` reports it running, exited or lost), else why it cannot be."""
        return f"the {self.name} executor cannot reattach runs"

    def close(self) -> None:
        """Release what the executor holds (running jobs keep running where the engine allows)."""
        return None
