"""The Celery side of the Celery executor: the app, its one task, and what a `gpufleet worker` runs.

One worker per GPU node consumes that node's own queue (:func:`node_queue`). The task runs the job exactly
as the local executor does (a :class:`~gpufleet.executors.local.LocalExecutor` inside the worker: its own
process group, ``CUDA_VISIBLE_DEVICES`` = the placed GPUs, stdout/stderr to a per-job log, the exit code),
and talks to the control plane through a few Redis keys in the broker's database:

``gpufleet:run:{job}:{attempt}`` (hash)
    The run record. ``state``: ``queued`` (written by the control plane) → ``running`` (claimed by a
    worker, with its ``worker`` name and the job's ``pid``) → ``exited`` (``exit_code``, ``reason``); or
    ``stopped`` (stopped before a worker claimed it) or ``lost`` (its worker died or shut down). Every
    change of ``state`` is a compare-and-set, so a run declared lost is never resurrected by a late worker.
    A stop request is the fields ``stop_grace`` / ``stop_reason``, which the worker polls.
``gpufleet:log:{job}`` (string)
    The job's log (every attempt), appended by whichever worker runs it; the control plane serves
    ``GET /jobs/{id}/logs`` from it by byte offset. Capped at ``executor.celery_log_max_bytes``.
``gpufleet:worker:{name}`` / ``gpufleet:node:{node}``
    Heartbeats: set every ``executor.heartbeat_s`` with a TTL of ``executor.heartbeat_timeout_s``. A run
    whose worker's key has expired is lost; a node without a key has no worker (nothing is placed there).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from celery import Celery, signals

from gpufleet.executors.base import ExecutorError, RunSpec
from gpufleet.exporter.errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

TASK = "gpufleet.run_job"
PREFIX = "gpufleet"
POLL_S = 0.2

# compare-and-set of a run record's state: KEYS[1] the record, ARGV[1] expected, ARGV[2] new, then field/value
CAS = """
if redis.call('HGET', KEYS[1], 'state') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', ARGV[2], unpack(ARGV, 3))
  return 1
end
return 0
"""


class BrokerUnavailable(ExecutorError, BackendUnavailable):
    """The Celery broker (Redis) cannot be reached (the CLI exits 5, like any unreachable server)."""


def node_queue(node: str) -> str:
    return f"{PREFIX}.node.{node}"


def run_key(job_id: str, attempt: int) -> str:
    return f"{PREFIX}:run:{job_id}:{attempt}"


def log_key(job_id: str) -> str:
    return f"{PREFIX}:log:{job_id}"


def worker_key(name: str) -> str:
    return f"{PREFIX}:worker:{name}"


def node_key(node: str) -> str:
    return f"{PREFIX}:node:{node}"


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ****."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:****@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_url(url: str, what: str = "executor.celery_broker_url") -> None:
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{what} must be a Redis URL (redis://HOST:PORT/DB, rediss:// or unix://), "
                          f"got {mask_url(url)!r}")


def connect(url: str, *, timeout_s: float = 5.0) -> Any:
    """A Redis client for ``url``, checked with PING; :class:`BrokerUnavailable` when it does not answer."""
    import redis

    check_url(url)
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=max(timeout_s, 10.0),
                                  health_check_interval=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"cannot reach the Celery broker at {mask_url(url)}: {exc}") from None
    return client


def make_app(broker_url: str, backend_url: str, *, visibility_timeout_s: float) -> Celery:
    """The Celery app both sides use, configured for long jobs: late acks, prefetch 1, a broker visibility
    timeout above the longest run (an unacknowledged job is not handed out again while it may still run)."""
    check_url(broker_url)
    check_url(backend_url, "executor.celery_result_backend")
    app = Celery("gpufleet", broker=broker_url, backend=backend_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=False,  # a dead worker's run is requeued by the job service, elsewhere
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        broker_transport_options={"visibility_timeout": int(visibility_timeout_s)},
        result_backend_transport_options={"visibility_timeout": int(visibility_timeout_s)},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5.0,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        result_expires=7 * 86400,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        task_create_missing_queues=True,
        broker_channel_error_retry=True,
    )

    @app.task(name=TASK, bind=True, acks_late=True, ignore_result=False)
    def run_job(self: Any, run: dict[str, Any]) -> dict[str, Any]:
        runtime = _RUNTIME
        if runtime is None:
            raise RuntimeError("gpufleet.run_job runs only inside `gpufleet worker`")
        return runtime.execute(RunSpec.from_dict(run))

    return app


# -- the worker side --------------------------------------------------------------------------------------
_RUNTIME: WorkerRuntime | None = None


def _with_pdeathsig(run: RunSpec) -> RunSpec:
    """Prefix the command with ``setpriv --pdeathsig KILL`` (util-linux) where it exists and the command
    resolves: a job whose worker is killed (-9) dies with it instead of running on unsupervised."""
    setpriv = shutil.which("setpriv")
    if not setpriv or not run.command:
        return run
    path = (run.env.get("PATH") or os.environ.get("PATH") or os.defpath)
    exe = run.command[0]
    found = shutil.which(exe, path=path) if "/" not in exe else (exe if os.access(
        Path(run.workdir or ".") / exe, os.X_OK) else None)
    if found is None:
        return run  # let the local executor report "cannot start" exactly as it does on its own
    return replace(run, command=[setpriv, "--pdeathsig", "KILL", "--", *run.command])


@dataclass
class WorkerRuntime:
    """State of one `gpufleet worker` process: its node, Redis client, log folder and heartbeats."""

    node: str
    name: str
    redis: Any
    log_dir: Path
    heartbeat_s: float = 5.0
    heartbeat_timeout_s: float = 30.0
    grace_s: float = 30.0
    log_max_bytes: int = 64 << 20
    systemd: str = "auto"
    shutting_down: threading.Event = field(default_factory=threading.Event)
    _stop_beat: threading.Event = field(default_factory=threading.Event)
    _beat: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._cas = self.redis.register_script(CAS)

    # heartbeats
    def beat_once(self) -> None:
        ttl = max(1, int(self.heartbeat_timeout_s * 1000))
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(worker_key(self.name), f"{self.node} {os.getpid()} {time.time():.3f}", px=ttl)
        if not self.shutting_down.is_set():  # a worker on its way out takes no new work for its node
            pipe.set(node_key(self.node), self.name, px=ttl)
        pipe.execute()

    def _leave_node(self) -> None:
        with contextlib.suppress(Exception):
            if _text(self.redis.get(node_key(self.node))) == self.name:
                self.redis.delete(node_key(self.node))

    def _beat_loop(self) -> None:
        while not self._stop_beat.wait(self.heartbeat_s):
            try:
                self.beat_once()
            except Exception as exc:  # the broker away for a while: keep trying, say so once per failure
                log.warning("heartbeat of %s failed: %s", self.name, exc)

    def start_heartbeats(self) -> None:
        self.beat_once()
        self._beat = threading.Thread(target=self._beat_loop, name="gpufleet-heartbeat", daemon=True)
        self._beat.start()

    def stop_heartbeats(self) -> None:
        self._stop_beat.set()
        if self._beat is not None:
            self._beat.join(timeout=2)
        self._leave_node()
        with contextlib.suppress(Exception):
            self.redis.delete(worker_key(self.name))

    def cas(self, key: str, old: str, new: str, **fields: Any) -> bool:
        args: list[Any] = [old, new]
        for k, v in fields.items():
            args += [k, "" if v is None else str(v)]
        return bool(self._cas(keys=[key], args=args))

    # process groups of the jobs this worker runs, so a successor can end what a killed worker left behind
    @property
    def groups_dir(self) -> Path:
        return self.log_dir.parent / "running"

    def _note_group(self, run: RunSpec, pgid: int) -> Path:
        self.groups_dir.mkdir(parents=True, exist_ok=True)
        mark = self.groups_dir / f"{run.job_id}.{run.attempt}"
        mark.write_text(f"{pgid} {run.job_id}\n")
        return mark

    def reap_leftovers(self) -> list[str]:
        """SIGKILL what is left of jobs a previous worker of this node started and never saw end (it was
        killed): every process in their process group that still carries their job id. Returns the runs."""
        reaped = []
        for mark in sorted(self.groups_dir.glob("*")) if self.groups_dir.is_dir() else []:
            try:
                pgid_text, job_id = mark.read_text().split()
                pgid = int(pgid_text)
            except (OSError, ValueError):
                pgid, job_id = 0, ""
            if pgid and _group_of_job(pgid, job_id):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                log.warning("killed what was left of run %s (process group %d): its worker had died",
                            mark.name, pgid)
                reaped.append(mark.name)
            with contextlib.suppress(OSError):
                mark.unlink()
        return reaped

    # one job
    def execute(self, run: RunSpec) -> dict[str, Any]:
        from gpufleet.executors.local import LocalExecutor

        key = run_key(run.job_id, run.attempt)
        if run.node != self.node:
            self.cas(key, "queued", "exited", worker=self.name, exit_code=127,
                     reason=f"reached worker of node {self.node}, placed on {run.node}")
            return {"exit_code": 127, "skipped": "wrong node"}
        if not self.cas(key, "queued", "running", worker=self.name, claimed_at=f"{time.time():.3f}"):
            return {"exit_code": None, "skipped": _text(self.redis.hget(key, "state")) or "missing"}
        local_log = self.log_dir / f"{run.job_id}.log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        offset = local_log.stat().st_size if local_log.exists() else 0
        streamer = _LogStreamer(self.redis, log_key(run.job_id), local_log, offset, self.log_max_bytes, self.node)
        local_run = _with_pdeathsig(replace(run, log_path=str(local_log)))
        try:
            ex = LocalExecutor(systemd=self.systemd, exit_files=False)  # the worker itself waits for it
            ex.start(local_run)
        except ExecutorError as exc:
            streamer.pump()
            self.cas(key, "running", "exited", exit_code=127, reason=str(exc), ended_at=f"{time.time():.3f}")
            return {"exit_code": 127, "reason": str(exc)}
        pgid = ex.procs[run.job_id].pgid  # the job's pid: it leads its own process group
        mark = self._note_group(run, pgid)
        with contextlib.suppress(Exception):
            self.redis.hset(key, mapping={"pid": pgid})
        try:
            exit_code, reason, lost = self._supervise(run, key, ex, streamer)
        except Exception as exc:  # a bug here must not leave the run "running" for ever
            log.exception("supervising %s failed", key)
            ex.close()
            exit_code, reason, lost = None, None, f"worker {self.name} failed supervising it: {exc}"
        with contextlib.suppress(OSError):
            mark.unlink()
        ended = f"{time.time():.3f}"
        if lost is not None:
            self._report(key, "lost", reason=lost, exit_code=exit_code, ended_at=ended)
        else:
            self._report(key, "exited", exit_code=exit_code, reason=reason, ended_at=ended)
        return {"exit_code": exit_code, "reason": reason or lost}

    def _supervise(self, run: RunSpec, key: str, ex: Any, streamer: _LogStreamer,
                   ) -> tuple[int | None, str | None, str | None]:
        """Wait for the job's exit, copying its log and acting on stop requests; (exit code, reason, lost)."""
        exit_code: int | None = None
        reason: str | None = None
        lost: str | None = None
        stopping = False
        while True:
            for ev in ex.poll(time.time()):
                if ev.kind == "exited":
                    exit_code, reason = ev.exit_code, ev.reason
            streamer.pump()
            if exit_code is not None:
                break
            if not stopping:
                try:
                    raw = self.redis.hmget(key, "state", "stop_grace", "stop_reason")
                except Exception as exc:  # the broker away: the job goes on; stop requests wait for it
                    log.warning("cannot read run record %s: %s", key, exc)
                    raw = ["running", None, None]
                state, grace, why = (_text(v) for v in raw)
                if grace:
                    stopping = True
                    ex.stop(run.job_id, float(grace), why or "stopped")
                elif state != "running":  # declared lost (this worker was silent too long) or gone
                    stopping = True
                    lost = f"run record is {state or 'missing'}"
                    ex.stop(run.job_id, self.grace_s, lost)
                elif self.shutting_down.is_set():
                    stopping = True
                    lost = f"worker {self.name} shut down"
                    self._leave_node()  # before the run is handed back, so it is not placed here again
                    ex.stop(run.job_id, self.grace_s, lost)
            time.sleep(POLL_S)
        return exit_code, reason, lost

    def _report(self, key: str, state: str, **fields: Any) -> None:
        """The run's end, retried while the broker is away (up to ten heartbeat timeouts: by then the control
        plane has declared the run lost, since this worker's heartbeats stopped too)."""
        deadline = time.monotonic() + 10 * self.heartbeat_timeout_s
        delay = 0.2
        while True:
            try:
                self.cas(key, "running", state, **fields)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    log.error("could not report the end of %s (%s): %s", key, state, exc)
                    return
                log.warning("cannot report the end of %s yet: %s", key, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _group_of_job(pgid: int, job_id: str) -> bool:
    """Whether a live process of process group ``pgid`` has ``GPUFLEET_JOB_ID=job_id`` in its environment
    (so a recycled group id is never killed)."""
    want = f"GPUFLEET_JOB_ID={job_id}".encode()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z" and want in (p / "environ").read_bytes().split(b"\0"):
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)


class _LogStreamer:
    """Copies what the job writes to its local log onto the job's Redis log, chunk by chunk."""

    CHUNK = 1 << 20

    def __init__(self, redis: Any, key: str, path: Path, offset: int, cap: int, node: str) -> None:
        self.redis, self.key, self.path, self.offset, self.cap, self.node = redis, key, path, offset, cap, node
        self.full = False

    def pump(self) -> None:
        if self.full:
            return
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(self.CHUNK)
        except FileNotFoundError:
            return
        if not data:
            return
        try:
            size = int(self.redis.strlen(self.key))
            if size + len(data) > self.cap:
                note = (f"\n--- gpufleet: log over {self.cap} bytes; the rest is in {self.path} on "
                        f"{self.node}\n").encode()
                self.redis.append(self.key, data[: max(0, self.cap - size)] + note)
                self.full = True
            else:
                self.redis.append(self.key, data)
            self.offset += len(data)
        except Exception as exc:  # the broker away: the local log keeps it, the next pump catches up
            log.warning("cannot append to %s: %s", self.key, exc)


def worker_name(node: str) -> str:
    return f"{node}.{os.getpid()}@{socket.gethostname()}"


def run_worker(*, node: str, broker_url: str, backend_url: str, visibility_timeout_s: float, log_dir: Path,
               concurrency: int = 8, heartbeat_s: float = 5.0, heartbeat_timeout_s: float = 30.0,
               grace_s: float = 30.0, log_max_bytes: int = 64 << 20, systemd: str = "auto",
               loglevel: str = "WARNING") -> int:
    """Consume ``node``'s queue until SIGTERM / SIGINT; returns the worker's exit code.

    On a warm shutdown each running job gets SIGTERM and ``grace_s`` for a last checkpoint; its run is then
    reported ``lost`` so the job service requeues it elsewhere."""
    global _RUNTIME
    if not node or any(c.isspace() for c in node):
        raise ConfigError(f"--node must be a node name without spaces, got {node!r}")
    client = connect(broker_url)
    connect(backend_url)
    app = make_app(broker_url, backend_url, visibility_timeout_s=visibility_timeout_s)
    name = worker_name(node)
    runtime = WorkerRuntime(node=node, name=name, redis=client, log_dir=log_dir, heartbeat_s=heartbeat_s,
                            heartbeat_timeout_s=heartbeat_timeout_s, grace_s=grace_s, log_max_bytes=log_max_bytes,
                            systemd=systemd)
    _RUNTIME = runtime

    def _shutting_down(**_: Any) -> None:
        runtime.shutting_down.set()

    signals.worker_shutting_down.connect(_shutting_down, weak=False)
    runtime.reap_leftovers()
    runtime.start_heartbeats()
    try:
        worker = app.Worker(hostname=name, queues=[node_queue(node)], pool="threads", concurrency=concurrency,
                            without_gossip=True, without_mingle=True, without_heartbeat=True, loglevel=loglevel,
                            optimization="fair", quiet=True)
        worker.start()
        return int(getattr(worker, "exitcode", 0) or 0)
    finally:
        runtime.stop_heartbeats()
        signals.worker_shutting_down.disconnect(_shutting_down)
        _RUNTIME = None
