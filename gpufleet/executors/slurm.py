"""The Slurm executor: each run is an ``sbatch`` job on the node gpufleet's policy chose.

A run becomes a batch script (kept beside the job's log; the log folder must be on a filesystem the Slurm
nodes share) that exports the job's environment and ``GPUFLEET_*`` (checkpoint folder, resume flag, attempt),
runs the command as a child, forwards SIGTERM to it, and writes the exit code to a ``.rc`` file. It is
submitted with ``--nodelist`` (the chosen node), ``--gres=gpu[:type]:N`` or ``--gpus`` (Slurm's GRES sets
``CUDA_VISIBLE_DEVICES``; which indices on the node is Slurm's choice), ``--time`` from ``max_runtime_s``,
``--output`` appending to the per-job log, ``--no-requeue`` (gpufleet requeues, from a checkpoint) and
``--dependency=afterok:`` for parents whose Slurm jobs are still active.

State comes from ``squeue --json`` (``squeue --format`` text where the JSON plugin is missing), finished jobs
from ``sacct --json`` where accounting runs, else from the ``.rc`` file. A stop is ``scancel --signal=TERM
--full`` (time for a last checkpoint), then ``scancel`` after the grace period. A node that Slurm reports
DOWN or DRAIN, or a job in ``NODE_FAIL``, makes the run ``lost`` (the job service requeues it; the node
counts as unavailable for placement until Slurm clears it). Each run's Slurm job id is its handle in the job
service's run table (:meth:`SlurmExecutor.handle`), so a restarted ``serve`` reattaches to the runs the old
one started (:meth:`SlurmExecutor.reattach`). Older gpufleet kept the ids in ``<data>/jobs/slurm-runs.json``:
that file is read once (:attr:`SlurmExecutor.legacy`), imported into the run table and renamed ``.imported``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.executors.base import ExecEvent, Executor, ExecutorError, RunSpec, job_env, read_log
from gpufleet.exporter.errors import BackendUnavailable
from gpufleet.integrations.slurm import SlurmClient, SlurmNode, _num

log = logging.getLogger(__name__)

ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "RESIZING", "REQUEUED",
                    "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SIGNALING", "STAGE_OUT", "STOPPED"})
LOST = frozenset({"NODE_FAIL", "BOOT_FAIL", "PREEMPTED"})
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NOT_PASSED = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")  # Slurm's GRES sets them on the node


@dataclass
class _Run:
    run: RunSpec
    slurm_id: str
    state: str = "PENDING"
    reported: bool = False
    kill_at: float | None = None
    """Monotonic time of the full cancel after a TERM (None: not stopping)."""
    lost: str | None = None
    """Why this run is lost (node fault): reported as ``lost`` when it has gone."""
    exit_code: int | None = None


def _time_limit(seconds: float) -> str:
    s = max(60, math.ceil(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def batch_script(run: RunSpec, rc_file: Path) -> str:
    """The sbatch script of one run: environment, the command as a child that gets SIGTERM, its exit code."""
    env = job_env(run, base={})
    env.setdefault("PATH", DEFAULT_PATH)
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())
                        if k not in _NOT_PASSED and k.isidentifier())
    argv = " ".join(shlex.quote(a) for a in run.command)
    tag = f"attempt {run.attempt} on $SLURMD_NODENAME (slurm job $SLURM_JOB_ID) GPUs ${{CUDA_VISIBLE_DEVICES:-none}}"
    return f"""#!/bin/bash
# gpufleet job {run.job_id}, attempt {run.attempt}
{exports}
echo "--- gpufleet: {tag}{' (resume)' if run.resume else ''}"
{argv} < /dev/null &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
wait "$child"
rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
echo "--- gpufleet: attempt {run.attempt} exited with $rc"
echo "$rc" > {shlex.quote(str(rc_file))}
exit "$rc"
"""


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, client: SlurmClient, *, state_file: str | Path | None = None, partition: str | None = None,
                 account: str | None = None, gpu_request: str = "gres", gpu_types: Mapping[str, str] | None = None,
                 grace_s: float = 30.0, poll_interval_s: float = 2.0, use_json: bool = True,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.partition = partition
        self.account = account
        self.gpu_request = gpu_request
        self.gpu_types = dict(gpu_types or {})
        self.grace_s = grace_s
        self.poll_interval_s = poll_interval_s
        self._mono = monotonic
        self._next_poll = 0.0
        self._json = use_json
        """Read ``squeue --json`` / ``sinfo --json`` (off, or found missing: the ``--format`` text)."""
        self.nodes: dict[str, SlurmNode] = {}
        self.state_file = Path(state_file) if state_file is not None else None
        """An older gpufleet's ``slurm-runs.json`` (read once, then retired by :meth:`retire_legacy`)."""
        self.runs: dict[str, _Run] = {}
        self.logs_at: dict[str, str] = {}
        self.legacy: dict[str, tuple[RunSpec, dict[str, Any]]] = self._load_legacy()
        """Runs listed in the older state file: job id -> (run, handle), for the job service to import."""

    # -- the run table (a restarted serve reattaches) ---------------------------------------------------
    def _load_legacy(self) -> dict[str, tuple[RunSpec, dict[str, Any]]]:
        if self.state_file is None:
            return {}
        try:
            doc = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ExecutorError(f"slurm executor: cannot read the older state file {self.state_file}: {exc}") from None
        return {jid: (RunSpec.from_dict(d["run"]), {"slurm_job_id": str(d["slurm_id"])})
                for jid, d in (doc.get("runs") or {}).items()}

    def retire_legacy(self) -> None:
        """The older state file was imported into the run table: rename it ``.imported``."""
        self.legacy = {}
        if self.state_file is not None and self.state_file.exists():
            os.replace(self.state_file, self.state_file.with_name(self.state_file.name + ".imported"))

    def handle(self, job_id: str) -> dict[str, Any] | None:
        r = self.runs.get(job_id)
        return {"slurm_job_id": r.slurm_id} if r else None

    def reattach(self, run: RunSpec, handle: Mapping[str, Any]) -> str | None:
        sid = str(handle.get("slurm_job_id") or "")
        if not sid.isdigit():
            return "no Slurm job id recorded"
        if run.job_id not in self.runs:
            self.runs[run.job_id] = _Run(run, sid)
            self.logs_at[run.job_id] = run.log_path
            self._next_poll = 0.0
        return None

    def slurm_id(self, job_id: str) -> str | None:
        """The Slurm job id of the job's current run."""
        r = self.runs.get(job_id)
        return r.slurm_id if r else None

    # -- the interface ----------------------------------------------------------------------------------
    def _files(self, run: RunSpec) -> tuple[Path, Path]:
        folder = Path(run.log_path).parent / "slurm"
        return folder / f"{run.job_id}.{run.attempt}.sh", folder / f"{run.job_id}.{run.attempt}.rc"

    def sbatch_args(self, run: RunSpec, script: Path) -> list[str]:
        n = len(run.gpu_uuids) or len(run.gpu_indexes)
        gtype = self.gpu_types.get(run.gpu_type, "")
        args = ["sbatch", "--parsable", f"--job-name=gpufleet-{run.job_id}", f"--nodelist={run.node}", "--nodes=1",
                f"--output={run.log_path}", "--open-mode=append", "--no-requeue", "--export=NONE",
                f"--comment=gpufleet:{run.job_id}:{run.attempt}"]
        if run.workdir:
            args.append(f"--chdir={run.workdir}")
        if n:
            args.append(f"--gres=gpu:{gtype + ':' if gtype else ''}{n}" if self.gpu_request == "gres"
                        else f"--gpus={gtype + ':' if gtype else ''}{n}")
        if run.cpu_milli:
            args.append(f"--cpus-per-task={max(1, math.ceil(run.cpu_milli / 1000))}")
        if run.memory_mib:
            args.append(f"--mem={run.memory_mib}M")
        if run.max_runtime_s:
            args.append(f"--time={_time_limit(run.max_runtime_s)}")
        if self.partition:
            args.append(f"--partition={self.partition}")
        if self.account:
            args.append(f"--account={self.account}")
        parents = [self.runs[d].slurm_id for d in run.depends_on
                   if d in self.runs and self.runs[d].state in ACTIVE and self.runs[d].exit_code is None]
        if parents:
            args.append(f"--dependency=afterok:{':'.join(parents)}")
        return [*args, str(script)]

    def start(self, run: RunSpec) -> None:
        if run.job_id in self.runs:
            raise ExecutorError(f"job {run.job_id} still has Slurm job {self.runs[run.job_id].slurm_id}")
        if not run.command:
            raise ExecutorError(f"job {run.job_id} has no command to run")
        if run.image:
            raise ExecutorError(f"job {run.job_id} names an image; the slurm executor runs commands on the node "
                                "(drop the image, or use executor.kind = kubernetes)")
        script, rc = self._files(run)
        script.parent.mkdir(parents=True, exist_ok=True)
        Path(run.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        rc.unlink(missing_ok=True)
        script.write_text(batch_script(run, rc))
        script.chmod(0o700)
        try:
            out = self.client.run(self.sbatch_args(run, script)).strip()
        except BackendUnavailable as exc:
            with open(run.log_path, "a") as fh:
                fh.write(f"--- gpufleet: sbatch refused attempt {run.attempt}: {exc}\n")
            raise ExecutorError(f"job {run.job_id}: sbatch failed: {exc}") from None
        slurm_id = out.split(";")[0].strip()
        if not slurm_id.isdigit():
            raise ExecutorError(f"job {run.job_id}: sbatch gave no job id (said {out[:200]!r})")
        self.runs[run.job_id] = _Run(run, slurm_id)
        self.logs_at[run.job_id] = run.log_path
        self._next_poll = 0.0
        log.info("job %s attempt %d is Slurm job %s on %s", run.job_id, run.attempt, slurm_id, run.node)

    def poll(self, now: float) -> list[ExecEvent]:
        mono = self._mono()
        held = any(not n.schedulable for n in self.nodes.values())  # watched until Slurm clears it
        if not (self.runs or held) or (mono < self._next_poll and not any(
                r.kill_at is not None and mono >= r.kill_at for r in self.runs.values())):
            return []
        self._next_poll = mono + self.poll_interval_s
        try:
            self._read_nodes()
            states = self._queue_states() if self.runs else {}
        except BackendUnavailable as exc:
            log.warning("slurm executor: %s (will retry)", exc)
            return []
        out: list[ExecEvent] = []
        gone: list[str] = []
        for jid, r in list(self.runs.items()):
            seen = states.get(r.slurm_id)
            if seen is not None:
                r.state, code = seen
                r.exit_code = code if r.state not in ACTIVE else None
            if seen is None or r.state not in ACTIVE:
                gone.append(jid)
                continue
            if r.state in ("RUNNING", "COMPLETING") and not r.reported:
                r.reported = True
                out.append(ExecEvent(jid, r.run.attempt, "running", node=r.run.node))
            node = self.nodes.get(r.run.node)
            if r.lost is None and node is not None and not node.schedulable:
                why = "+".join((node.state, *node.flags))
                r.lost = f"node {node.name} is {why} in Slurm" + (f": {node.reason}" if node.reason else "")
                if r.state == "PENDING" or node.state == "DOWN" or "NOT_RESPONDING" in node.flags:
                    self._cancel(r)  # nothing to checkpoint, or nobody there to do it
                else:
                    self._term(r, self.grace_s)
            if r.kill_at is not None and mono >= r.kill_at:
                self._cancel(r)
                r.kill_at = None
        if gone:
            rcs = {j: self._rc_file(self.runs[j].run) for j in gone}
            finals = self._finished([self.runs[j].slurm_id for j in gone if rcs[j] is None])
            for jid in gone:
                r = self.runs.pop(jid)
                state, code = finals.get(r.slurm_id, (r.state, r.exit_code))
                if rcs[jid] is not None:
                    code = rcs[jid]
                if not r.reported and state not in LOST:
                    out.append(ExecEvent(jid, r.run.attempt, "running", node=r.run.node))
                if r.lost is not None or state in LOST:
                    out.append(ExecEvent(jid, r.run.attempt, "lost", reason=r.lost or f"Slurm job {state}",
                                         node=r.run.node))
                elif code is None:
                    out.append(ExecEvent(jid, r.run.attempt, "lost", node=r.run.node,
                                         reason=f"Slurm job {r.slurm_id} left the queue without an exit code"))
                else:
                    out.append(ExecEvent(jid, r.run.attempt, "exited", code,
                                         None if state in ("COMPLETED", "FAILED") else f"Slurm job {state}"))
        return out

    def stop(self, job_id: str, grace_s: float, reason: str) -> None:
        r = self.runs.get(job_id)
        if r is None or r.kill_at is not None:
            return
        if r.state == "PENDING":
            self._cancel(r)
        else:
            self._term(r, grace_s)

    def active(self, job_id: str) -> bool:
        return job_id in self.runs

    def busy_uuids(self) -> set[str]:
        return {u for r in self.runs.values() if r.kill_at is not None or r.lost for u in r.run.gpu_uuids}

    def unavailable_nodes(self, names: Any) -> set[str]:
        """Nodes Slurm will not run new work on (DOWN, DRAIN...): the job service places nothing there."""
        return {n for n in names if n in self.nodes and not self.nodes[n].schedulable}

    def logs(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        path = self.logs_at.get(job_id)
        return read_log(path, offset) if path else ("", offset)

    def close(self) -> None:
        """Slurm keeps the jobs running; the run table lets the next executor reattach."""
        return None

    # -- Slurm ------------------------------------------------------------------------------------------
    def _term(self, r: _Run, grace_s: float) -> None:
        r.kill_at = self._mono() + grace_s
        try:
            self.client.run(["scancel", "--signal=TERM", "--full", r.slurm_id])
        except BackendUnavailable as exc:
            log.warning("slurm executor: TERM to job %s failed: %s", r.slurm_id, exc)
        self._next_poll = 0.0

    def _cancel(self, r: _Run) -> None:
        try:
            self.client.run(["scancel", r.slurm_id])
        except BackendUnavailable as exc:
            log.warning("slurm executor: scancel %s failed: %s", r.slurm_id, exc)
        self._next_poll = 0.0

    def _read_nodes(self) -> None:
        if self._json:
            self.nodes = {n.name: n for n in self.client.nodes()}
            return
        out = self.client.run(["sinfo", "-h", "-N", "-o", "%N|%T|%E"])
        nodes = {}
        for line in out.splitlines():
            name, _, rest = line.partition("|")
            state, _, reason = rest.partition("|")
            base, *flags = state.rstrip("*~#!%$@^-").upper().split("+")
            if state.endswith("*"):
                flags.append("NOT_RESPONDING")
            if base in ("DRAINED", "DRAINING"):
                base, flags = ("IDLE" if base == "DRAINED" else "MIXED"), [*flags, "DRAIN"]
            nodes[name] = SlurmNode(name, base, tuple(flags), 0, "", 0, 0, 0, (), reason if reason != "none" else "")
        self.nodes = nodes

    def _queue_states(self) -> dict[str, tuple[str, int | None]]:
        """Slurm job id -> (state, exit code) of every job squeue still shows."""
        if self._json:
            try:
                doc = self.client._json(["squeue", "--json"])
            except BackendUnavailable as exc:
                if "json" not in str(exc).lower() and "plugin" not in str(exc).lower():
                    raise
                log.info("slurm executor: squeue --json unavailable (%s); reading squeue --format", exc)
                self._json = False
            else:
                return {str(_num(d.get("job_id"))): (_state(d.get("job_state")), _exit(d.get("exit_code")))
                        for d in doc.get("jobs") or []}
        out = self.client.run(["squeue", "-h", "-t", "all", "-o", "%i|%T"])
        return {i.strip(): (s.strip().upper(), None) for i, _, s in (ln.partition("|") for ln in out.splitlines())
                if i.strip()}

    def _finished(self, ids: list[str]) -> dict[str, tuple[str, int | None]]:
        """State and exit code of jobs that left squeue, from sacct (empty without accounting)."""
        if not ids:
            return {}
        try:
            out = self.client.run(["sacct", "-n", "-P", "-X", "-o", "JobIDRaw,State,ExitCode", "-j", ",".join(ids)])
        except BackendUnavailable:
            return {}
        found: dict[str, tuple[str, int | None]] = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) >= 3 and parts[0] in ids:
                code, _, sig = parts[2].partition(":")
                found[parts[0]] = (parts[1].split()[0].upper(),
                                   128 + int(sig) if sig.isdigit() and int(sig) else _exit(code))
        return found

    def _rc_file(self, run: RunSpec) -> int | None:
        rc = self._files(run)[1]
        with contextlib.suppress(OSError, ValueError):
            return int(rc.read_text().strip())
        return None


def _state(v: Any) -> str:
    if isinstance(v, list):
        return str(v[0]).upper() if v else ""
    return str(v or "").upper()


def _exit(v: Any) -> int | None:
    """An exit code from 22.05 (a number) or 23.x+ (``{"return_code": {...}, "signal": {...}}``) JSON."""
    if isinstance(v, Mapping) and "return_code" in v:
        return _num(v.get("return_code"))
    if v is None or v == "":
        return None
    try:
        return _num(v)
    except (TypeError, ValueError):
        return None
