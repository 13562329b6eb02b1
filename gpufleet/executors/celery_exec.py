"""The Celery executor (control-plane side): each placed run becomes a Celery task on its node's queue.

``start`` writes the run record (``queued``) and sends the task; ``poll`` reads the run records back in one
pipelined round trip and turns them into :class:`ExecEvent` values: ``running`` once a worker claimed the
run, ``exited`` with the exit code, ``lost`` when the claiming worker's heartbeat expired (kill -9, a dead
host, a partition), when it shut down mid-run, or when nobody on the node claimed a queued run within
``heartbeat_timeout_s``. ``stop`` asks the worker (SIGTERM to the job's process group, the grace period,
SIGKILL); a run no worker has claimed yet is withdrawn at once. ``logs`` reads the job's log from Redis.
A run's handle in the job service's run table is its Celery task id, node and run record key: a restarted
``serve`` reattaches by reading the run record again (:meth:`CeleryExecutor.reattach`).
The Redis keys are described in :mod:`gpufleet.executors.celery_app`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gpufleet.executors.base import ExecEvent, Executor, ExecutorError, RunSpec
from gpufleet.executors.celery_app import (
    CAS,
    TASK,
    connect,
    log_key,
    make_app,
    mask_url,
    node_key,
    node_queue,
    run_key,
    worker_key,
)

log = logging.getLogger(__name__)


@dataclass
class _Run:
    run: RunSpec
    key: str
    queued_mono: float
    sent: bool = True
    reported: bool = False
    stop_sent: bool = False
    stop_wanted: tuple[float, str] | None = None


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)


class CeleryExecutor(Executor):
    name = "celery"

    def __init__(self, broker_url: str, backend_url: str | None = None, *, heartbeat_timeout_s: float = 30.0,
                 visibility_timeout_s: float = 7 * 86400.0 + 3600.0, record_ttl_s: float | None = None,
                 log_ttl_s: float = 30 * 86400.0, node_check_s: float = 1.0) -> None:
        self.broker_url = broker_url
        self.backend_url = backend_url or broker_url
        self.where = mask_url(broker_url)
        self.redis = connect(broker_url)
        self.app = make_app(broker_url, self.backend_url, visibility_timeout_s=visibility_timeout_s)
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.record_ttl_s = int(record_ttl_s or visibility_timeout_s + 86400.0)
        self.log_ttl_s = int(log_ttl_s)
        self.node_check_s = node_check_s
        self.runs: dict[str, _Run] = {}
        self._cas = self.redis.register_script(CAS)
        self._down: set[str] = set()
        self._dead: dict[str, tuple[str, float]] = {}
        """Node -> the worker there whose run was just declared lost, and until when its (stale or returning)
        heartbeat does not count, so the requeued run is not placed straight back on it."""
        self._down_at = -1e18
        self._down_for: tuple[str, ...] = ()
        self._warned = False
        self._broker_down_until = -1e18

    # -- interface -------------------------------------------------------------------------------------
    def start(self, run: RunSpec) -> None:
        if run.job_id in self.runs:
            raise ExecutorError(f"job {run.job_id} is still running on {self.runs[run.job_id].run.node}")
        if not run.command:
            raise ExecutorError(f"job {run.job_id} has no command to run")
        r = _Run(run, run_key(run.job_id, run.attempt), time.monotonic(), sent=False)
        self.runs[run.job_id] = r
        if time.monotonic() >= self._broker_down_until:
            self._send(r)  # else (the broker is away) the next polls send it once it answers

    def _send(self, r: _Run) -> bool:
        """Write the run record and queue the task; False (and retried by the next poll) while the broker
        cannot be reached: the job stays ``starting``, it does not fail because Redis was away."""
        run = r.run
        record = {"state": "queued", "job": run.job_id, "attempt": run.attempt, "node": run.node,
                  "gpus": ",".join(run.gpu_uuids), "queued_at": f"{time.time():.3f}"}
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(r.key)
            pipe.hset(r.key, mapping=record)
            pipe.expire(r.key, self.record_ttl_s)
            pipe.expire(log_key(run.job_id), self.log_ttl_s)
            pipe.execute()
            self.app.send_task(TASK, args=[run.to_dict()], queue=node_queue(run.node),
                               task_id=f"{run.job_id}.{run.attempt}", retry=True,
                               retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5,
                                             "interval_max": 0.5})
        except Exception as exc:
            self._broker_down_until = time.monotonic() + 2.0  # one try per 2 s, not one per job
            log.warning("Celery executor: cannot queue job %s for node %s on %s yet: %s", run.job_id, run.node,
                        self.where, exc)
            return False
        r.sent = True
        r.queued_mono = time.monotonic()
        return True

    def poll(self, now: float) -> list[ExecEvent]:
        out: list[ExecEvent] = []
        for r in [r for r in self.runs.values() if not r.sent]:
            if r.stop_wanted is not None:  # stopped before it ever reached the broker
                self.runs.pop(r.run.job_id)
                out.append(ExecEvent(r.run.job_id, r.run.attempt, "exited", -15, r.stop_wanted[1], node=r.run.node))
            elif time.monotonic() < self._broker_down_until or not self._send(r):
                break
        runs = [r for r in self.runs.values() if r.sent]
        if not runs:
            return out
        try:
            self._send_stops()
            pipe = self.redis.pipeline(transaction=False)
            for r in runs:
                pipe.hgetall(r.key)
            records = [{str(_text(k)): str(_text(v)) for k, v in h.items()} for h in pipe.execute()]
            workers = sorted({rec["worker"] for rec in records if rec.get("state") == "running" and rec.get("worker")})
            nodes = sorted({r.run.node for r, rec in zip(runs, records, strict=True) if rec.get("state") == "queued"})
            pipe = self.redis.pipeline(transaction=False)
            for w in workers:
                pipe.exists(worker_key(w))
            for n in nodes:
                pipe.exists(node_key(n))
            alive = pipe.execute()
        except Exception as exc:  # the broker away: nothing is concluded from silence we cannot read
            if not self._warned:
                log.warning("Celery executor: cannot read run records from %s: %s", self.where, exc)
                self._warned = True
            return out
        self._warned = False
        worker_up = dict(zip(workers, alive[: len(workers)], strict=True))
        node_up = dict(zip(nodes, alive[len(workers):], strict=True))
        mono = time.monotonic()
        for r, rec in zip(runs, records, strict=True):
            out += self._events(r, rec, worker_up, node_up, mono)
        if any(ev.kind == "lost" for ev in out):
            self._down_at = -1e18  # look at the nodes again before the requeued runs are placed
        return out

    def _events(self, r: _Run, rec: dict[str, str], worker_up: dict[str, int],
                node_up: dict[str, int], mono: float) -> list[ExecEvent]:
        jid, attempt, node = r.run.job_id, r.run.attempt, r.run.node
        state = rec.get("state")
        out: list[ExecEvent] = []

        def running() -> None:
            if not r.reported:
                r.reported = True
                out.append(ExecEvent(jid, attempt, "running", node=node))

        def done(ev: ExecEvent) -> None:
            out.append(ev)
            self.runs.pop(jid, None)

        if state == "running":
            running()
            w = rec.get("worker") or ""
            if not worker_up.get(w) and self._set(r.key, "running", "lost",
                                                  reason=f"worker {w} stopped sending heartbeats"):
                self._dead[node] = (w, time.monotonic() + 2 * self.heartbeat_timeout_s)
                done(ExecEvent(jid, attempt, "lost", reason=f"worker {w} on node {node} stopped sending heartbeats "
                               f"for {self.heartbeat_timeout_s:g} s (dead or unreachable)", node=node))
        elif state == "exited":
            running()
            code = rec.get("exit_code")
            done(ExecEvent(jid, attempt, "exited", int(code) if code else -1, rec.get("reason") or None, node=node))
        elif state == "lost":
            done(ExecEvent(jid, attempt, "lost", reason=rec.get("reason") or "run lost", node=node))
        elif state == "stopped":
            done(ExecEvent(jid, attempt, "exited", -15, rec.get("reason") or "stopped before it started", node=node))
        elif state == "queued":
            if not node_up.get(node) and mono - r.queued_mono > self.heartbeat_timeout_s and self._set(
                    r.key, "queued", "lost", reason=f"no live worker on node {node}"):
                done(ExecEvent(jid, attempt, "lost", reason=f"no live gpufleet worker on node {node} for "
                               f"{self.heartbeat_timeout_s:g} s", node=node))
        else:  # the record vanished (Redis flushed or expired)
            done(ExecEvent(jid, attempt, "lost", reason=f"run record {r.key} is missing from the broker", node=node))
        return out

    def stop(self, job_id: str, grace_s: float, reason: str) -> None:
        r = self.runs.get(job_id)
        if r is None or r.stop_wanted is not None:
            return
        r.stop_wanted = (grace_s, reason)
        try:
            self._send_stops()
        except Exception as exc:  # sent again by the next poll
            log.warning("Celery executor: stop of %s not sent yet (%s): %s", job_id, self.where, exc)

    def _send_stops(self) -> None:
        for r in self.runs.values():
            if r.stop_wanted is None or r.stop_sent or not r.sent:
                continue
            grace, reason = r.stop_wanted
            if not self._set(r.key, "queued", "stopped", reason=reason):  # else withdrawn: next poll says so
                self.redis.hset(r.key, mapping={"stop_grace": f"{grace:g}", "stop_reason": reason})
            r.stop_sent = True

    def active(self, job_id: str) -> bool:
        return job_id in self.runs

    def handle(self, job_id: str) -> dict[str, Any] | None:
        r = self.runs.get(job_id)
        if r is None:
            return None
        return {"task_id": f"{job_id}.{r.run.attempt}", "node": r.run.node, "run_key": r.key}

    def reattach(self, run: RunSpec, handle: Mapping[str, Any]) -> str | None:
        """Track a run again from its run record in Redis (the worker that runs it is not disturbed)."""
        if run.job_id not in self.runs:
            key = str(handle.get("run_key") or run_key(run.job_id, run.attempt))
            self.runs[run.job_id] = _Run(run, key, time.monotonic(), sent=True)
        return None

    def busy_uuids(self) -> set[str]:
        return {u for r in self.runs.values() if r.stop_wanted is not None for u in r.run.gpu_uuids}

    def logs(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        limit = 1 << 20
        start = max(0, offset)
        try:
            data = self.redis.getrange(log_key(job_id), start, start + limit - 1)
        except Exception as exc:
            raise ExecutorError(f"cannot read the log of job {job_id} from the Celery broker at {self.where}: "
                                f"{exc}") from None
        return bytes(data).decode("utf-8", errors="replace"), start + len(data)

    def unavailable_nodes(self, names: Iterable[str]) -> set[str]:
        """Nodes among ``names`` with no live worker (no heartbeat): the job service places nothing there.
        Read at most every ``node_check_s``; when Redis cannot be read, the last answer stands."""
        names = tuple(names)
        mono = time.monotonic()
        if names == self._down_for and mono - self._down_at < self.node_check_s:
            return self._down
        try:
            pipe = self.redis.pipeline(transaction=False)
            for n in names:
                pipe.get(node_key(n))
            beats = [_text(b) for b in pipe.execute()]
        except Exception as exc:
            log.warning("Celery executor: cannot read worker heartbeats from %s: %s", self.where, exc)
            return self._down
        # a node's heartbeat names the worker that sent it last: one declared dead does not count
        self._dead = {n: d for n, d in self._dead.items() if d[1] > mono}
        self._down = {n for n, b in zip(names, beats, strict=True) if b is None or self._dead.get(n, ("",))[0] == b}
        self._down_at, self._down_for = mono, names
        return self._down

    def close(self) -> None:
        """Running jobs keep running on their workers; only this side's connections are closed."""
        try:
            self.app.close()
            self.redis.close()
        except Exception:  # closing is best effort
            log.debug("closing the Celery executor", exc_info=True)

    # -- helpers ---------------------------------------------------------------------------------------
    def _set(self, key: str, old: str, new: str, **fields: Any) -> bool:
        args: list[Any] = [old, new]
        for k, v in fields.items():
            args += [k, str(v)]
        return bool(self._cas(keys=[key], args=args))
