"""The local executor (the embedded default): the job's command as a subprocess on this host.

Each run gets its own process group (``start_new_session``), an environment that shows it exactly the placed
GPUs (``CUDA_VISIBLE_DEVICES`` / ``ROCR_VISIBLE_DEVICES``), and a per-job log (stdout and stderr) under the
data folder. Where the host runs systemd (``/run/systemd/system`` exists) and ``systemd-run`` is installed,
``executor.systemd = auto`` (the default) wraps the run in ``systemd-run --scope`` with the job's CPU and
memory limits; without systemd the job runs unconfined and its log says the limits were not applied
(``on`` refuses to start without systemd, ``off`` never uses it). Stopping sends SIGTERM to the whole group,
waits the grace period, then SIGKILLs the group.

With ``exit_files`` (the service's default) the command runs under a small ``/bin/sh`` shim that waits for it
and writes its exit code (128 + N for signal N) to ``<log dir>/local/<job>.<attempt>.rc``: a ``serve``
restarted while the job ran reattaches to its process group (:meth:`LocalExecutor.reattach`, the handle is
the group id) and still learns how it ended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gpufleet.executors.base import ExecEvent, Executor, ExecutorError, RunSpec, job_env, read_log
from gpufleet.exporter.errors import ConfigError

log = logging.getLogger(__name__)

# $1: the exit-code file; the rest: the command. A trapped (no-op) TERM keeps the shim waiting while the job
# (in the same process group, so it gets the TERM too) writes its last checkpoint.
SHIM = ('rc_file=$1; shift; "$@" & child=$!; trap : TERM INT HUP; wait "$child"; rc=$?; '
        'while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done; '
        'echo "$rc" > "$rc_file.tmp" && mv -f "$rc_file.tmp" "$rc_file"; exit "$rc"')


def systemd_available() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemd-run") is not None


def systemd_prefix(run: RunSpec) -> list[str]:
    args = ["systemd-run", "--scope", "--quiet", "--collect", f"--unit={scope_unit(run)}"]
    if run.memory_mib:
        args.append(f"--property=MemoryMax={run.memory_mib}M")
    if run.cpu_milli:
        args.append(f"--property=CPUQuota={max(1, run.cpu_milli // 10)}%")
    return [*args, "--"]


def scope_unit(run: RunSpec) -> str:
    return f"gpufleet-{run.job_id}-{run.attempt}"


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of a live process, None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2:].split()
        return fields[0], int(fields[2])
    except (OSError, ValueError, IndexError):
        return None


def _carries_job(pid: int, job_id: str) -> bool:
    try:
        return f"GPUFLEET_JOB_ID={job_id}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def leader_alive(pgid: int, job_id: str) -> bool:
    """Whether the process group's leader still runs (not a zombie) and is this job's (a recycled pid is not)."""
    st = _proc_state(pgid)
    return st is not None and st[0] not in ("Z", "X") and st[1] == pgid and _carries_job(pgid, job_id)


def group_of_job(pgid: int, job_id: str) -> bool:
    """Whether any live process of group ``pgid`` has ``GPUFLEET_JOB_ID=job_id`` (so a recycled group id is
    never signalled)."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        st = _proc_state(int(p.name))
        if st is not None and st[1] == pgid and st[0] not in ("Z", "X") and _carries_job(int(p.name), job_id):
            return True
    return False


def _resolve(run: RunSpec, env: Mapping[str, str]) -> str | None:
    """Why the command cannot be started (missing, not executable), or None."""
    exe = run.command[0]
    if "/" in exe:
        path = Path(run.workdir or ".") / exe
        if not path.exists():
            return "No such file or directory"
        return None if os.access(path, os.X_OK) and path.is_file() else "Permission denied"
    return None if shutil.which(exe, path=env.get("PATH") or os.defpath) else "No such file or directory"


@dataclass
class _Proc:
    run: RunSpec
    popen: subprocess.Popen[bytes] | None
    """None for a run a previous serve started (reattached by its process group)."""
    log: IO[bytes] | None
    pgid: int
    rc_file: Path | None
    reported: bool = False
    kill_at: float | None = None
    reason: str | None = None
    gone_at_reattach: bool = False


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class SystemdMissing(ExecutorError, ConfigError):
    """``executor.systemd = on`` on a host without systemd."""


class LocalExecutor(Executor):
    name = "local"
    survives_close = False

    def __init__(self, *, systemd: str = "auto", exit_files: bool = True, monotonic: object = time.monotonic) -> None:
        if systemd == "on" and not systemd_available():
            raise SystemdMissing("executor.systemd = on, but this host has no systemd (/run/systemd/system is missing) "
                              "or no systemd-run; use auto (limits applied where systemd runs) or off")
        self.systemd = systemd
        self.use_systemd = systemd == "on" or (systemd == "auto" and systemd_available())
        if systemd == "auto" and not self.use_systemd:
            log.info("local executor: no systemd on this host; jobs run without cgroup CPU and memory limits")
        self.exit_files = exit_files
        self.procs: dict[str, _Proc] = {}
        self.logs_at: dict[str, str] = {}
        self._mono = monotonic
        self.host = socket.gethostname()

    def _now(self) -> float:
        return float(self._mono())  # type: ignore[operator]

    def rc_file(self, run: RunSpec) -> Path:
        return Path(run.log_path).parent / "local" / f"{run.job_id}.{run.attempt}.rc"

    def _limits_note(self, run: RunSpec) -> str:
        if self.use_systemd:
            props = [a.split("=", 1)[1] for a in systemd_prefix(run) if a.startswith("--property=")]
            return f"--- gpufleet: in systemd scope {scope_unit(run)}{' (' + ', '.join(props) + ')' if props else ''}\n"
        if self.systemd == "auto":
            return ("--- gpufleet: cgroup limits not applied: this host has no systemd "
                    "(executor.systemd = auto); the job runs without CPU and memory limits\n")
        return ""

    def start(self, run: RunSpec) -> None:
        if run.job_id in self.procs:
            raise ExecutorError(f"job {run.job_id} is still running here")
        if not run.command:
            raise ExecutorError(f"job {run.job_id} has no command to run")
        log_path = Path(run.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        Path(run.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        env = job_env(run)
        out = open(log_path, "ab")  # noqa: SIM115 - the child writes to it until it exits
        out.write(f"--- gpufleet: attempt {run.attempt} on {run.node} GPUs {','.join(run.gpu_uuids)}"
                  f"{' (resume)' if run.resume else ''}\n".encode())
        out.write(self._limits_note(run).encode())
        out.flush()
        rc_file: Path | None = None
        argv = list(run.command)
        if self.exit_files:
            why = _resolve(run, env)
            if why is not None:
                out.write(f"--- gpufleet: cannot start {argv[0]!r}: {why}\n".encode())
                out.close()
                raise ExecutorError(f"job {run.job_id}: cannot start {argv[0]!r}: {why}")
            rc_file = self.rc_file(run)
            rc_file.parent.mkdir(parents=True, exist_ok=True)
            rc_file.unlink(missing_ok=True)
            argv = ["/bin/sh", "-c", SHIM, "gpufleet-job", str(rc_file), *argv]
        argv = (systemd_prefix(run) if self.use_systemd else []) + argv
        try:
            popen = subprocess.Popen(argv, env=env, cwd=run.workdir or None, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            out.write(f"--- gpufleet: cannot start {argv[0]!r}: {exc.strerror or exc}\n".encode())
            out.close()
            raise ExecutorError(f"job {run.job_id}: cannot start {argv[0]!r}: {exc.strerror or exc}") from None
        self.procs[run.job_id] = _Proc(run, popen, out, popen.pid, rc_file)
        self.logs_at[run.job_id] = str(log_path)

    def handle(self, job_id: str) -> dict[str, Any] | None:
        p = self.procs.get(job_id)
        if p is None:
            return None
        return {"pid": p.pgid, "pgid": p.pgid, "host": self.host, "log_path": p.run.log_path,
                "rc_file": str(p.rc_file) if p.rc_file else None}

    def reattach(self, run: RunSpec, handle: Mapping[str, Any]) -> str | None:
        if run.job_id in self.procs:
            return None
        host = handle.get("host")
        if host and host != self.host:
            return f"its process ran on host {host}, this serve runs on {self.host}"
        pgid = int(handle.get("pgid") or 0)
        if pgid <= 0:
            return "no process group recorded"
        rc = handle.get("rc_file")
        p = _Proc(run, None, None, pgid, Path(rc) if rc else None)
        p.gone_at_reattach = not leader_alive(pgid, run.job_id)
        self.procs[run.job_id] = p
        self.logs_at[run.job_id] = run.log_path
        return None

    def _read_rc(self, p: _Proc) -> int | None:
        if p.rc_file is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int(p.rc_file.read_text().strip())
        return None

    def _ended(self, p: _Proc) -> tuple[int | None, str | None]:
        """(exit code, lost reason) of a run whose process has ended."""
        if p.popen is not None:
            rc = p.popen.returncode
            return (self._read_rc(p) if rc is None else rc), None
        code = self._read_rc(p)
        if code is not None:
            return code, None
        if p.kill_at is not None:
            return 137, None  # stopped by us: SIGKILLed after the grace period
        when = "was gone when serve restarted" if p.gone_at_reattach else "ended"
        return None, (f"process group {p.pgid} of attempt {p.run.attempt} {when} without recording an exit "
                      "code (killed)")

    def poll(self, now: float) -> list[ExecEvent]:
        out = []
        mono = self._now()
        for jid, p in list(self.procs.items()):
            alive = p.popen.poll() is None if p.popen is not None else leader_alive(p.pgid, jid)
            if alive:
                if not p.reported:
                    p.reported = True
                    out.append(ExecEvent(jid, p.run.attempt, "running", node=p.run.node))
                if p.kill_at is not None and mono >= p.kill_at:
                    _signal_group(p.pgid, signal.SIGKILL)
                continue
            # leftovers of the group go with the leader (a group we did not start only if it is still the job's)
            if p.popen is not None or group_of_job(p.pgid, jid):
                _signal_group(p.pgid, signal.SIGKILL)
            code, lost = self._ended(p)
            if not p.reported and lost is None:
                out.append(ExecEvent(jid, p.run.attempt, "running", node=p.run.node))
            line = (f"--- gpufleet: attempt {p.run.attempt} exited with {code}\n" if lost is None
                    else f"--- gpufleet: attempt {p.run.attempt}: {lost}\n")
            self._write_log(p, line)
            if p.rc_file is not None:
                p.rc_file.unlink(missing_ok=True)
            if lost is not None:
                out.append(ExecEvent(jid, p.run.attempt, "lost", reason=lost, node=p.run.node))
            else:
                out.append(ExecEvent(jid, p.run.attempt, "exited", -1 if code is None else code, p.reason))
            del self.procs[jid]
        return out

    @staticmethod
    def _write_log(p: _Proc, line: str) -> None:
        if p.log is not None:
            p.log.write(line.encode())
            p.log.close()
            return
        with contextlib.suppress(OSError), open(p.run.log_path, "ab") as fh:
            fh.write(line.encode())

    def stop(self, job_id: str, grace_s: float, reason: str) -> None:
        p = self.procs.get(job_id)
        if p is None or p.kill_at is not None:
            return
        p.reason = reason
        p.kill_at = self._now() + grace_s
        if p.popen is not None or leader_alive(p.pgid, job_id):
            _signal_group(p.pgid, signal.SIGTERM)

    def active(self, job_id: str) -> bool:
        return job_id in self.procs  # until poll() has reported its exit

    def busy_uuids(self) -> set[str]:
        return {u for p in self.procs.values() if p.kill_at is not None for u in p.run.gpu_uuids}

    def logs(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        path = self.logs_at.get(job_id)
        return read_log(path, offset) if path else ("", offset)

    def close(self) -> None:
        """Stop every run (SIGTERM, up to 5 s, SIGKILL): the local executor's jobs do not outlive ``serve``'s
        orderly stop (the job service records them as interrupted first)."""
        for jid, p in list(self.procs.items()):
            if p.popen is not None or leader_alive(p.pgid, jid):
                _signal_group(p.pgid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for jid, p in list(self.procs.items()):
            if p.popen is not None:
                try:
                    p.popen.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(p.pgid, signal.SIGKILL)
                    p.popen.wait()
            else:
                while leader_alive(p.pgid, jid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if group_of_job(p.pgid, jid):
                    _signal_group(p.pgid, signal.SIGKILL)
            if p.log is not None:
                p.log.close()
            if p.rc_file is not None:
                p.rc_file.unlink(missing_ok=True)
        self.procs.clear()
