"""The local executor (the embedded default): the job's command as a subprocess on this host.

Each run gets its own process group (``start_new_session``), an environment that shows it exactly the placed
GPUs (``CUDA_VISIBLE_DEVICES`` / ``ROCR_VISIBLE_DEVICES``), and a per-job log (stdout and stderr) under the
data folder. Where the host runs systemd (``/run/systemd/system`` exists) and ``systemd-run`` is installed,
the run is wrapped in ``systemd-run --scope`` with the job's CPU and memory limits. Stopping sends SIGTERM to
the whole group, waits the grace period, then SIGKILLs the group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gpufleet.executors.base import ExecEvent, Executor, ExecutorError, RunSpec, job_env, read_log


def systemd_available() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemd-run") is not None


def systemd_prefix(run: RunSpec) -> list[str]:
    args = ["systemd-run", "--scope", "--quiet", "--collect", f"--unit=gpufleet-{run.job_id}-{run.attempt}"]
    if run.memory_mib:
        args.append(f"--property=MemoryMax={run.memory_mib}M")
    if run.cpu_milli:
        args.append(f"--property=CPUQuota={max(1, run.cpu_milli // 10)}%")
    return [*args, "--"]


@dataclass
class _Proc:
    run: RunSpec
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    reported: bool = False
    kill_at: float | None = None
    reason: str | None = None


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, *, systemd: str = "auto", monotonic: object = time.monotonic) -> None:
        self.use_systemd = systemd == "on" or (systemd == "auto" and systemd_available())
        self.procs: dict[str, _Proc] = {}
        self.logs_at: dict[str, str] = {}
        self._mono = monotonic

    def _now(self) -> float:
        return float(self._mono())  # type: ignore[operator]

    def start(self, run: RunSpec) -> None:
        if run.job_id in self.procs:
            raise ExecutorError(f"job {run.job_id} is still running here")
        if not run.command:
            raise ExecutorError(f"job {run.job_id} has no command to run")
        log_path = Path(run.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        Path(run.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - the child writes to it until it exits
        log.write(f"--- gpufleet: attempt {run.attempt} on {run.node} GPUs {','.join(run.gpu_uuids)}"
                  f"{' (resume)' if run.resume else ''}\n".encode())
        log.flush()
        argv = (systemd_prefix(run) if self.use_systemd else []) + list(run.command)
        try:
            popen = subprocess.Popen(argv, env=job_env(run), cwd=run.workdir or None, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            log.write(f"--- gpufleet: cannot start {argv[0]!r}: {exc.strerror or exc}\n".encode())
            log.close()
            raise ExecutorError(f"job {run.job_id}: cannot start {argv[0]!r}: {exc.strerror or exc}") from None
        self.procs[run.job_id] = _Proc(run, popen, log)
        self.logs_at[run.job_id] = str(log_path)

    def poll(self, now: float) -> list[ExecEvent]:
        out = []
        mono = self._now()
        for jid, p in list(self.procs.items()):
            rc = p.popen.poll()
            if rc is None:
                if not p.reported:
                    p.reported = True
                    out.append(ExecEvent(jid, p.run.attempt, "running", node=p.run.node))
                if p.kill_at is not None and mono >= p.kill_at:
                    _signal_group(p.popen.pid, signal.SIGKILL)
                continue
            _signal_group(p.popen.pid, signal.SIGKILL)  # leftovers of the group go with the leader
            if not p.reported:
                out.append(ExecEvent(jid, p.run.attempt, "running", node=p.run.node))
            p.log.write(f"--- gpufleet: attempt {p.run.attempt} exited with {rc}\n".encode())
            p.log.close()
            out.append(ExecEvent(jid, p.run.attempt, "exited", rc, p.reason))
            del self.procs[jid]
        return out

    def stop(self, job_id: str, grace_s: float, reason: str) -> None:
        p = self.procs.get(job_id)
        if p is None or p.kill_at is not None:
            return
        p.reason = reason
        p.kill_at = self._now() + grace_s
        _signal_group(p.popen.pid, signal.SIGTERM)

    def active(self, job_id: str) -> bool:
        return job_id in self.procs  # until poll() has reported its exit

    def busy_uuids(self) -> set[str]:
        return {u for p in self.procs.values() if p.kill_at is not None for u in p.run.gpu_uuids}

    def logs(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        path = self.logs_at.get(job_id)
        return read_log(path, offset) if path else ("", offset)

    def close(self) -> None:
        for p in list(self.procs.values()):
            _signal_group(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for p in list(self.procs.values()):
            try:
                p.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p.popen.pid, signal.SIGKILL)
                p.popen.wait()
            p.log.close()
        self.procs.clear()
