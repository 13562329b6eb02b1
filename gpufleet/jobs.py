"""The job service: the allocator's queue places jobs, an executor runs them, recovery restarts them.

Each step (:meth:`QueueJobService.tick`, once per collection cycle, and after every submission): the
executor's events are applied (running, exited with a code, lost), runs past their ``max_runtime_s`` are
stopped, the queue schedules (placing, preempting), and placed jobs are handed to the executor once the GPUs
they were given are no longer held by a run that is still stopping. Every state transition is audited
(when the API's audit log is attached) and counted for ``/metrics``.

Recovery: a GPU that is lost (``gpu_up 0``, XID 79 in the twin), a drained GPU or node (by an operator, or
a failure risk at or above ``jobs.drain_risk_threshold``) or a spot interruption notice stops the affected
jobs with SIGTERM and ``jobs.grace_s`` for a last checkpoint, requeues them ahead of their class, places them
away from the failed or draining GPUs and restarts them with ``GPUFLEET_RESUME=1`` and the same
``GPUFLEET_CHECKPOINT_DIR``. A drain stops preemptible jobs only and lets the others finish.

The queue is not thread-safe; the service's scheduler thread and the API's request threads share it
through this adapter's lock.
"""

from __future__ import annotations

import builtins
import heapq
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gpufleet.allocator.jobs import JobSpec, PriorityClass, validate_batch
from gpufleet.allocator.queue import (
    CANCELLED,
    FINAL,
    HOLDING,
    INTERRUPTED,
    PLACED,
    RUNNING,
    STARTING,
    STATES,
    JobQueue,
    JobRecord,
)
from gpufleet.allocator.state import FULL, Health
from gpufleet.executors.base import ExecEvent, Executor, ExecutorError, RunSpec, read_log
from gpufleet.executors.simulated import SimulatedExecutor
from gpufleet.exporter.errors import ConfigError, Conflict, InputError, NotFound
from gpufleet.exporter.schema import Snapshot
from gpufleet.models.failure_base import Risk
from gpufleet.settings import JobsSettings, Settings

log = logging.getLogger(__name__)

_HEALTH = {"ok": Health.OK, "cordoned": Health.CORDONED, "draining": Health.DRAINING}
_SPEC_FIELDS = ("command", "image", "env", "workdir", "max_runtime_s", "retries", "retry_backoff_s", "on_failure")


def make_executor(settings: Settings) -> Executor:
    """The executor ``settings.executor.kind`` names."""
    ex = settings.executor
    if ex.kind == "local":
        from gpufleet.executors.local import LocalExecutor

        return LocalExecutor(systemd=ex.systemd)
    if ex.kind == "simulated":
        return SimulatedExecutor()
    if ex.kind == "celery":
        from gpufleet.executors.celery_exec import CeleryExecutor

        if ex.celery_broker_url is None:
            raise InputError("executor.kind = celery needs executor.celery_broker_url (redis://HOST:PORT/DB)")
        backend = ex.celery_result_backend or ex.celery_broker_url
        visibility = ex.celery_visibility_timeout_s or settings.jobs.max_runtime_s + 3600.0
        if visibility <= settings.jobs.max_runtime_s:
            raise ConfigError(f"executor.celery_visibility_timeout_s ({visibility:g}) must exceed "
                              f"jobs.max_runtime_s ({settings.jobs.max_runtime_s:g}), or a running job is "
                              "handed to a second worker")
        return CeleryExecutor(ex.celery_broker_url.get_secret_value(), backend.get_secret_value(),
                              heartbeat_timeout_s=ex.heartbeat_timeout_s, visibility_timeout_s=visibility)
    if ex.kind == "slurm":
        from gpufleet.executors.slurm import SlurmExecutor
        from gpufleet.integrations.build import slurm_client

        return SlurmExecutor(slurm_client(settings.cluster), state_file=Path(settings.data_dir) / "jobs" / "slurm-runs.json",
                             partition=ex.slurm_partition, account=ex.slurm_account, gpu_request=ex.slurm_gpu_request,
                             gpu_types=ex.slurm_gpu_types, grace_s=settings.jobs.grace_s,
                             poll_interval_s=ex.poll_interval_s)
    if ex.kind == "kubernetes":
        from gpufleet.executors.kubernetes import KubernetesExecutor, api_client

        return KubernetesExecutor(api_client(settings.cluster), namespace=ex.kubernetes_namespace,
                                  gpu_resource=ex.kubernetes_gpu_resource, pull_policy=ex.kubernetes_image_pull_policy,
                                  pin=ex.kubernetes_pin, grace_s=settings.jobs.grace_s,
                                  poll_interval_s=ex.poll_interval_s, timeout=settings.cluster.kubernetes_timeout,
                                  checkpoint_pvc=ex.kubernetes_checkpoint_pvc)
    raise InputError(f"executor {ex.kind!r} is not available in this build; use local, celery, slurm, kubernetes "
                     "or simulated")


def open_queue(url: str, state: Any, policy: Any, *, legacy_path: Path | None = None, **kwargs: Any) -> JobQueue:
    """The queue kept in the service's database at ``url``; an older ``queue.json`` at ``legacy_path`` is
    imported once when the database holds no queue yet (then renamed ``.imported``)."""
    from gpufleet.state import open_state
    from gpufleet.state.legacy import read_json, retire

    store = open_state(url)
    store.bind(list(state.names), [list(u) for u in state.uuids])
    if legacy_path is not None and store.load() is None:
        data = read_json(Path(legacy_path))
        if data is not None:
            queue = JobQueue.from_data(data, state, policy, store=store, **kwargs)
            queue.rewrite_all()  # jobs, usage and operator overrides: everything the file held
            retire(Path(legacy_path))
            return queue
    return JobQueue.open(store, state, policy, **kwargs)


class QueueJobService:
    def __init__(self, queue: JobQueue, clock: Callable[[], float] = time.time, executor: Executor | None = None,
                 *, settings: JobsSettings | None = None, data_dir: str | Path | None = None,
                 audit: Any = None) -> None:
        self.queue = queue
        self.clock = clock
        self.lock = threading.RLock()
        self.settings = settings or JobsSettings()
        base = Path(data_dir) if data_dir is not None else (queue.path.parent if queue.path else Path("."))
        self.log_dir = Path(self.settings.log_dir or base / "jobs" / "logs")
        self.checkpoint_dir = Path(self.settings.checkpoint_dir or base / "jobs" / "checkpoints")
        self.executor = executor or SimulatedExecutor()
        self.sim = self.executor if isinstance(self.executor, SimulatedExecutor) else SimulatedExecutor()
        self.audit = audit
        queue.auto_start = False
        queue.listeners.append(self._on_transition)
        self._runs: dict[str, tuple[Executor, int]] = {}
        """The current run of each started job: its executor and attempt number."""
        self._stopping: dict[str, str] = {}
        """Current runs stopped on purpose (max runtime), with the reason their exit is a failure."""
        self._stopped: dict[str, Executor] = {}
        """Runs stopped because their job left its GPUs (cancel, interrupt, preemption); exit awaited."""
        self._placed: set[str] = {n for n, r in queue.jobs.items() if r.status in (PLACED, STARTING)}
        self._run_started: dict[str, float] = {}
        self._deadlines: list[tuple[float, str, float]] = []
        """(max-runtime deadline, job, run start) of running jobs: a heap, so a step looks only at the due."""
        self.stats: dict[str, float] = {"queue_wait_seconds_sum": 0.0, "queue_wait_count": 0.0,
                                        "run_seconds_sum": 0.0, "run_count": 0.0}
        self.transitions: dict[tuple[str, str], int] = {}
        self._silent: frozenset[str] = frozenset()
        """Nodes the last snapshot had no answer from (fleet mode)."""
        with self.lock:
            self._reattach(self.clock())

    # -- transitions ---------------------------------------------------------------------------------
    def _on_transition(self, rec: JobRecord, old: str, new: str, reason: str, now: float) -> None:
        name = rec.spec.name
        self.transitions[(old, new)] = self.transitions.get((old, new), 0) + 1
        if new == PLACED:
            self._placed.add(name)
            self.stats["queue_wait_seconds_sum"] += max(0.0, now - rec.submitted)
            self.stats["queue_wait_count"] += 1
        elif new != STARTING:
            self._placed.discard(name)
        if old == RUNNING and new != RUNNING and name in self._run_started:
            self.stats["run_seconds_sum"] += max(0.0, now - self._run_started.pop(name))
            self.stats["run_count"] += 1
        if new in (INTERRUPTED, CANCELLED) and name in self._runs:
            ex, _ = self._runs.pop(name)
            self._stopped[name] = ex
            ex.stop(name, self.settings.grace_s, reason or new)
        if self.audit is not None and old != new:
            try:
                self.audit.append(user=rec.spec.user, role="system", action=f"job.{new}", target=name,
                                  outcome="ok", source="scheduler", ts=now,
                                  detail={"from": old, "reason": reason, "attempt": rec.restarts + 1})
            except Exception:
                log.exception("audit of job %s %s -> %s failed", name, old, new)

    # -- API -----------------------------------------------------------------------------------------
    def _spec(self, job_id: str, j: Mapping[str, Any], ids: Mapping[str, str], user: str,
              team: str | None) -> JobSpec:
        ttype = j.get("task_type") or self.settings.default_task_type
        d = self.settings.task_types.get(ttype)
        if d is None:
            raise InputError(f"job {j['name']}: unknown task_type {ttype!r}")
        gpus = float(j.get("gpus", 1))
        if gpus >= 1 and gpus != int(gpus):
            raise InputError(f"job {j['name']}: ask for a whole number of GPUs or a fraction below 1, got {gpus}")
        whole, milli = (0, round(gpus * FULL)) if gpus < 1 else (int(gpus), FULL)
        ckpt = j.get("checkpointing")
        if ckpt is None:
            ckpt = d.checkpointing or j.get("checkpoint_interval_s") is not None
        extra = {k: j[k] for k in _SPEC_FIELDS if j.get(k) is not None}
        if "command" in extra:
            extra["command"] = tuple(extra["command"])
        if self.executor.name == "kubernetes":
            if extra.get("command") and not extra.get("image"):
                raise InputError(f"job {j['name']}: image is required: the kubernetes executor runs the command in "
                                 "a container (add image: REGISTRY/NAME:TAG)")
            if extra.get("image") and not extra.get("command"):
                raise InputError(f"job {j['name']}: command is required with image {extra['image']!r} "
                                 "(the argv to run in the container)")
        return JobSpec(
            name=job_id, gpus=max(whole, 1) if milli == FULL else 1, gpu_milli=milli,
            gpu_memory_bytes=int(j.get("gpu_memory_bytes") or 0), gpu_types=tuple(j.get("gpu_types") or ()),
            priority=PriorityClass.parse(j.get("priority") or d.priority),
            gang=bool(d.gang if j.get("gang") is None else j["gang"]),
            preemptible=bool(d.preemptible if j.get("preemptible") is None else j["preemptible"]),
            checkpointing=bool(ckpt),
            checkpoint_interval_s=float(j.get("checkpoint_interval_s") or d.checkpoint_interval_s),
            depends_on=tuple(ids.get(x, x) for x in j.get("depends_on", [])),
            duration_s=float(j.get("duration_s") or 3600.0), user=user, team=team or "default",
            task_type=ttype, **extra)

    def submit(self, jobs: list[dict[str, Any]], user: str, team: str | None) -> list[dict[str, Any]]:
        now = self.clock()
        with self.lock:
            base = self.queue._seq  # ids continue the queue's own sequence
            ids: dict[str, str] = {}
            named = []
            for k, j in enumerate(jobs):
                job_id = f"j{base + k + 1}-{j['name']}"
                ids[j.get("client_id") or j["name"]] = job_id
                named.append((job_id, j))
            reasons: list[str] = []
            specs = []
            for job_id, j in named:
                try:
                    specs.append(self._spec(job_id, j, ids, user, team))
                except InputError as exc:
                    reasons.append(str(exc))
            # all-or-nothing for a batch: validate every job first and report every reason
            _, rejected = validate_batch(specs, self.queue.limits, known=self.queue.jobs.keys())
            reasons += [f"{r.job}: {r.reason}" for r in rejected]
            if reasons:
                raise InputError(f"batch rejected: {'; '.join(reasons)}")
            accepted, _ = self.queue.submit(specs, now)
            self._step(now)  # place and start what fits at once: the answer shows where it runs
            return [self._public(self.queue.jobs[n]) for n in accepted]

    def list(self, user: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            recs = sorted(self.queue.jobs.values(), key=lambda r: -r.seq)
            return [self._public(r) for r in recs if user is None or r.spec.user == user]

    def _rec(self, job_id: str) -> JobRecord:
        rec = self.queue.jobs.get(job_id)
        if rec is None:
            raise NotFound(f"no job {job_id!r}")
        return rec

    def get(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            return self._public(self._rec(job_id))

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            rec = self._rec(job_id)
            if rec.status in FINAL:
                raise Conflict(f"job {job_id} is {rec.status} already")
            self.queue.cancel(job_id, self.clock())
            return self._public(rec)

    def logs(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        """The job's log (stdout and stderr of every attempt) from ``offset`` bytes; and the next offset."""
        with self.lock:
            self._rec(job_id)
            ex = self._runs.get(job_id, (self.executor, 0))[0]
        if ex.name in ("local", "simulated"):
            return read_log(self.log_dir / f"{job_id}.log", offset)
        return ex.logs(job_id, offset)

    def allocations(self) -> builtins.list[dict[str, Any]]:
        with self.lock:
            st = self.queue.state
            out = []
            for rec in self.queue.jobs.values():
                for p in rec.placements:
                    for g in p.gpus:
                        out.append({"job_id": rec.spec.name, "uuid": st.uuids[p.node][g], "node": st.names[p.node],
                                    "share": p.milli / FULL})
            return out

    def set_gpu_health(self, uuid: str, state: str, reason: str = "", by: str = "") -> None:
        """An operator's cordon (no new work), drain (preemptible jobs stop after a last checkpoint, the
        others finish) or ok (lift it)."""
        with self.lock:
            health = _HEALTH.get(state, Health.CORDONED)
            now = self.clock()
            if state == "draining":
                self.queue.interrupt_gpu(uuid, now, health=Health.DRAINING, only_preemptible=True)
            self.queue.state.set_gpu_override(uuid, health, reason=reason, by=by, at=now)
            self.queue._save()

    def gpu_overrides(self) -> dict[str, str]:
        """Operator overrides of GPUs held across restarts: uuid -> state (cordoned, draining...)."""
        with self.lock:
            return {t: o.health.name.lower() for (k, t), o in self.queue.state.overrides.items() if k == "gpu"}

    def drain_node(self, node: str, *, spot_notice: bool = False) -> builtins.list[str]:
        """An operator's drain (preemptible jobs stop) or a spot interruption notice (every job stops)."""
        with self.lock:
            return self.queue.drain_node(node, self.clock(), only_preemptible=not spot_notice)

    # -- the service's scheduler ---------------------------------------------------------------------
    def observe(self, snapshot: Snapshot, now: float, silent: frozenset[str] = frozenset()) -> builtins.list[str]:
        """Take live load and up/lost state; requeue the jobs of GPUs that were lost; schedule.

        ``silent`` (fleet mode): nodes whose exporter stopped answering. Their GPUs are unknown, neither
        healthy nor lost: nothing new is placed there and their running jobs are left alone until the
        node answers again (an operator's override of the node is kept either way).

        Job times are on this service's clock, as for submit and cancel, never ``now`` (the snapshot's
        time: simulated for a twin, so a job would start before it was submitted)."""
        now = self.clock()
        with self.lock:
            st = self.queue.state
            lost = [u for u, up in snapshot.up.items() if not up and u in st._uuid_index
                    and st.gpu_health[st._uuid_index[u]] != Health.LOST]
            st.update_from_snapshot(snapshot)
            for uuid in lost:
                self.queue.interrupt_gpu(uuid, now, health=Health.LOST)
            self._silent = frozenset(silent)
            self._node_health()
            return self.tick(now)

    def _node_health(self) -> None:
        """Each node's health: the operator's override, cordoned while the node is silent (fleet mode) or
        while the executor has nobody there to run work (``unavailable_nodes``: no live Celery worker)."""
        st = self.queue.state
        gone = set(self._silent)
        check = getattr(self.executor, "unavailable_nodes", None)
        if check is not None:
            gone |= check(st.names)
        for i, name in enumerate(st.names):
            want = int(st.node_override[i])
            if name in gone:
                want = max(want, int(Health.CORDONED))
            if int(st.node_health[i]) != want:
                st.node_health[i] = want
                st.refresh(i)

    def set_risk(self, risk: Mapping[str, Risk | float]) -> None:
        """Failure risk per GPU (a :class:`Risk` carries its horizon; a float is over the state's current one);
        a GPU at or above the drain threshold is drained (its preemptible jobs move)."""
        with self.lock:
            st = self.queue.state
            st.set_risk(risk)
            now = self.clock()
            for uuid, r in risk.items():
                where = st._uuid_index.get(uuid)
                p = r.p if isinstance(r, Risk) else float(r)
                if where is not None and p >= self.settings.drain_risk_threshold and st.gpu_health[where] == Health.OK:
                    self.queue.interrupt_gpu(uuid, now, health=Health.DRAINING, only_preemptible=True)

    def persist(self) -> None:
        with self.lock:
            self.queue._save()

    def tick(self, now: float) -> builtins.list[str]:
        """Apply executor events, stop overdue runs, schedule, start placed jobs; returns the started ones."""
        with self.lock:
            return self._step(now)

    def close(self) -> None:
        """Close the executors. Engines' runs (Celery, Slurm, Kubernetes) go on and are reattached by the next
        ``serve`` from the run table; the local executor's runs are stopped, recorded as ``interrupted`` and
        requeued (they resume from their checkpoint at the next start)."""
        with self.lock:
            now = self.clock()
            ending = [n for n, (ex, _) in self._runs.items() if not ex.survives_close]
            with self.queue.batch():
                for name in ending:
                    self.queue.interrupt(name, now, reason="serve stopped; the run was stopped with it")
            for ex in {id(self.executor): self.executor, id(self.sim): self.sim}.values():
                ex.close()
            with self.queue.batch():
                for name, ex in list(self._stopped.items()):
                    if not ex.survives_close:
                        self._stopped.pop(name)
                        self._forget_run(self.queue.jobs.get(name), None)

    # -- the run table (restart) -------------------------------------------------------------------------
    def _forget_run(self, rec: JobRecord | None, attempt: int | None) -> None:
        """The run of ``attempt`` (None: any) has ended: drop its handle from the run table."""
        if rec is not None and rec.run is not None and (attempt is None or rec.run.get("attempt") == attempt):
            rec.run = None
            self.queue._save()

    def _reattach(self, now: float) -> None:
        """After a restart: track again every run the run table holds (the executor polls it on), finish
        stopping runs stopped before the restart, and interrupt (requeue) a started job whose run cannot be
        reattached, so no job stays ``starting`` or ``running`` with nothing behind it."""
        legacy: dict[str, tuple[RunSpec, dict[str, Any]]] = dict(getattr(self.executor, "legacy", None) or {})
        by_name = {ex.name: ex for ex in self._executors()}
        with self.queue.batch():
            for name, rec in sorted(self.queue.jobs.items(), key=lambda kv: kv[1].seq):
                if rec.run is None and rec.status in (STARTING, RUNNING) and name in legacy:
                    spec, handle = legacy[name]  # an older gpufleet's slurm-runs.json
                    rec.run = {"executor": self.executor.name, "attempt": spec.attempt, "handle": handle,
                               "at": now, "spec": spec.to_dict()}
                run = rec.run
                if run is None:
                    if rec.status in (STARTING, RUNNING):
                        self.queue.interrupt(name, now, reason="serve restarted and no run handle was recorded for "
                                             "this job (started by an older gpufleet): run again")
                    continue
                spec = RunSpec.from_dict(run.get("spec") or {**self.run_spec(rec).to_dict(),
                                                             "attempt": run.get("attempt", rec.restarts + 1)})
                ex = by_name.get(str(run.get("executor")))
                current = rec.status in (STARTING, RUNNING)  # else a run stopped before the restart (requeued, ...)
                why = (f"it ran on the {run.get('executor')} executor, this serve uses {self.executor.name}"
                       if ex is None else ex.reattach(spec, run.get("handle") or {}))
                if why is not None or ex is None:
                    rec.run = None
                    if current:
                        self.queue.interrupt(name, now, reason=f"serve restarted and cannot reattach attempt "
                                             f"{spec.attempt}: {why}")
                    log.warning("job %s: run %d not reattached: %s", name, spec.attempt, why)
                    continue
                if current:
                    self._runs[name] = (ex, spec.attempt)
                    if rec.status == RUNNING:
                        self._started_running(name, rec, rec.started if rec.started is not None else now)
                    log.info("job %s: reattached run %d (%s %s)", name, spec.attempt, ex.name, run.get("handle"))
                else:  # stopped (cancelled, preempted) before the restart, not seen ending: finish the stop
                    self._stopped[name] = ex
                    ex.stop(name, self.settings.grace_s, f"job {rec.status} before serve restarted")
        if legacy:
            self.executor.retire_legacy()  # type: ignore[attr-defined]

    # -- internals -------------------------------------------------------------------------------------
    def _executors(self) -> builtins.list[Executor]:
        return [self.executor] if self.sim is self.executor else [self.executor, self.sim]

    def _poll(self, now: float) -> None:
        for ex in self._executors():
            for ev in ex.poll(now):
                self._apply(ev, now)

    def _step(self, now: float) -> builtins.list[str]:
        self._poll(now)
        self._enforce_runtime(now)
        if hasattr(self.executor, "unavailable_nodes"):  # a lost worker's node takes no new work until it is back
            self._node_health()
        self.queue.schedule(now)
        started = self._start_placed(now)
        self._poll(now)
        return started

    def _apply(self, ev: ExecEvent, now: float) -> None:
        name = ev.job_id
        cur = self._runs.get(name)
        rec = self.queue.jobs.get(name)
        if cur is None or cur[1] != ev.attempt:  # an older run (stopped on purpose) reporting
            if ev.kind in ("exited", "lost"):
                self._stopped.pop(name, None)
                self._forget_run(rec, ev.attempt)
            return
        if rec is None or rec.status not in HOLDING:
            self._runs.pop(name, None)
            self._forget_run(rec, ev.attempt)
            return
        if ev.kind == "running":
            if rec.status != RUNNING:
                self._started_running(name, rec, now)
                self.queue.mark(name, RUNNING, now)
            return
        self._runs.pop(name, None)
        rec.run = None  # written with the transition below
        if ev.kind == "lost":
            self.queue.interrupt(name, now, reason=ev.reason or "run lost")
            return
        self.queue.finish(name, now, int(ev.exit_code if ev.exit_code is not None else -1),
                          reason=self._stopping.pop(name, None))

    def _started_running(self, name: str, rec: JobRecord, began: float) -> None:
        self._run_started[name] = began
        limit = min(rec.spec.max_runtime_s or self.settings.max_runtime_s, self.settings.max_runtime_s)
        heapq.heappush(self._deadlines, (began + limit, name, began))

    def _enforce_runtime(self, now: float) -> None:
        """Stop runs past their maximum runtime (the deadline heap: a step costs the due runs, not all)."""
        while self._deadlines and self._deadlines[0][0] < now:
            deadline, name, began = heapq.heappop(self._deadlines)
            cur = self._runs.get(name)
            if cur is None or self._run_started.get(name) != began or name in self._stopping:
                continue  # that run ended (or a newer one runs with its own deadline)
            self._stopping[name] = f"stopped after max_runtime_s {deadline - began:g}"
            cur[0].stop(name, self.settings.grace_s, self._stopping[name])

    def run_spec(self, rec: JobRecord) -> RunSpec:
        st = self.queue.state
        uuids = [st.uuids[p.node][g] for p in rec.placements for g in p.gpus]
        node = st.names[rec.placements[0].node] if rec.placements else ""
        return RunSpec(
            job_id=rec.spec.name, attempt=rec.restarts + 1, command=list(rec.spec.command), node=node,
            gpu_indexes=[g for p in rec.placements for g in p.gpus], gpu_uuids=uuids,
            log_path=str(self.log_dir / f"{rec.spec.name}.log"),
            checkpoint_dir=str(self.checkpoint_dir / rec.spec.name), resume=rec.restarts > 0,
            env=dict(rec.spec.env), workdir=rec.spec.workdir, image=rec.spec.image, gpu_type=rec.gpu_type,
            max_runtime_s=rec.spec.max_runtime_s, duration_s=rec.remaining_s, depends_on=list(rec.spec.depends_on),
            cpu_milli=rec.spec.cpu_milli, memory_mib=rec.spec.memory_mib)

    def _start_placed(self, now: float) -> builtins.list[str]:
        started = []
        busy: set[str] = set()
        for ex in self._executors():
            busy |= ex.busy_uuids()
        for name in sorted(self._placed, key=lambda n: self.queue.jobs[n].seq):
            rec = self.queue.jobs[name]
            if rec.status != PLACED or name in self._runs:
                continue
            ex = self.executor if rec.spec.command else self.sim
            run = self.run_spec(rec)
            if name in self._stopped or ex.active(name) or busy.intersection(run.gpu_uuids):
                continue  # the previous run (or the one it preempts) is still writing its last checkpoint
            try:
                ex.start(run)
            except ExecutorError as exc:
                self.queue.finish(name, now, 127, reason=str(exc))
                continue
            self._runs[name] = (ex, run.attempt)
            rec.run = {"executor": ex.name, "attempt": run.attempt, "handle": ex.handle(name) or {}, "at": now,
                       "spec": run.to_dict()}
            self.queue.mark(name, STARTING, now)
            started.append(name)
        return started

    def _public(self, rec: JobRecord) -> dict[str, Any]:
        st = self.queue.state
        return {
            "id": rec.spec.name, "name": rec.spec.name.split("-", 1)[1] if "-" in rec.spec.name else rec.spec.name,
            "user": rec.spec.user, "team": rec.spec.team, "state": rec.status, "gpus": rec.spec.gpu_count,
            "priority": rec.spec.priority.name.lower(), "depends_on": list(rec.spec.depends_on),
            "submitted_at": rec.submitted, "started_at": rec.started, "finished_at": rec.finished,
            "placement": [st.uuids[p.node][g] for p in rec.placements for g in p.gpus],
            "node": st.names[rec.placements[0].node] if rec.placements else None,
            "reason": rec.reason, "exit_code": rec.exit_code, "task_type": rec.spec.task_type,
            "command": list(rec.spec.command), "image": rec.spec.image, "restarts": rec.restarts,
            "preemptible": rec.spec.preemptible, "checkpointing": rec.spec.checkpointing,
        }

    def counts(self) -> dict[str, int]:
        """Jobs by state (every state, zero included)."""
        with self.lock:
            out = dict.fromkeys(STATES, 0)
            for r in self.queue.jobs.values():
                out[r.status] = out.get(r.status, 0) + 1
            return out
