"""The Celery executor end to end: a real redis-server, three real `gpufleet worker` processes as three
twin nodes, real job processes; a worker killed with -9 mid-job; the worker CLI against a dead broker."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from gpufleet.allocator.state import Health
from gpufleet.exporter.errors import BackendUnavailable, ConfigError

from gpufleet.executors.base import ExecutorError
from gpufleet.executors.celery_app import node_key, run_key
from gpufleet.executors.celery_exec import CeleryExecutor
from gpufleet.jobs import QueueJobService, make_executor
from gpufleet.settings import Settings
from gpufleet.wiring import cluster_from_devices
from tests.executors.helpers import db_service, run_until, service, twin
from tests.servers import Redis as RedisServer
from tests.servers import ServerProcess, free_port, wait_until

pytestmark = pytest.mark.server
GPUFLEET = str(Path(sys.executable).with_name("gpufleet"))
HEARTBEAT_TIMEOUT = 1.5

# a job: appends "<name> <worker it ran on> <CUDA_VISIBLE_DEVICES> <attempt>" to a shared file
WRITE = ("import os, sys\n"
         "with open(sys.argv[2], 'a') as fh:\n"
         "    fh.write(' '.join([sys.argv[1], os.environ['TEST_WORKER'], os.environ['CUDA_VISIBLE_DEVICES'],"
         " os.environ['GPUFLEET_ATTEMPT']]) + '\\n')\n"
         "print('hello from', sys.argv[1], flush=True)\n"
         "print('worker settings:', [k for k in os.environ if k.startswith(('GPUFLEET_EXECUTOR', 'GPUFLEET_DATA'))])\n"
         "raise SystemExit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)\n")


class Workers:
    """One `gpufleet worker --node NAME` subprocess per twin node; TEST_WORKER names the process a job ran in."""

    def __init__(self, tmp: Path, url: str, nodes: list[str]) -> None:
        self.tmp, self.url, self.procs = tmp, url, {}
        self.redis = redis_lib.Redis.from_url(url)
        for node in nodes:
            self.start(node)
        for node in nodes:
            self.wait(node)

    def start(self, node: str) -> None:
        env = {"GPUFLEET_DATA_DIR": str(self.tmp / node), "GPUFLEET_EXECUTOR__HEARTBEAT_S": "0.3",
               "GPUFLEET_EXECUTOR__HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT),
               "GPUFLEET_EXECUTOR__WORKER_GRACE_S": "1", "GPUFLEET_EXECUTOR__SYSTEMD": "off",
               "GPUFLEET_LOG_LEVEL": "WARNING", "TEST_WORKER": node}
        self.procs[node] = ServerProcess([GPUFLEET, "worker", "--node", node, "--broker", self.url,
                                          "--concurrency", "2"], self.tmp / f"{node}.log", env=env)

    def wait(self, node: str) -> None:
        p = self.procs[node]

        def up() -> bool:
            if not p.alive():
                raise RuntimeError(f"worker {node} exited:\n{p.log()}")
            return bool(self.redis.exists(node_key(node)))
        wait_until(up, 60, f"worker {node}", interval=0.1)

    def local_log(self, node: str, job_id: str) -> Path:
        return self.tmp / node / "worker" / node / "logs" / f"{job_id}.log"

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop(grace=10.0)
        self.redis.close()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def workers(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    ws = Workers(tmp_path_factory.mktemp("workers"), redis_url, sorted({d.node for d in twin(nodes=3).devices()}))
    yield ws
    ws.stop()


def celery_service(redis_url: str, tmp: Path, grace_s: float = 10.0) -> QueueJobService:
    ex = CeleryExecutor(redis_url, heartbeat_timeout_s=HEARTBEAT_TIMEOUT, node_check_s=0.2)
    return service(twin(nodes=3, gpus=2), ex, tmp, grace_s=grace_s)


def _write(name: str, out: Path, code: int = 0) -> list[str]:
    return [sys.executable, "-c", WRITE, name, str(out), str(code)]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _lines(out: Path) -> list[list[str]]:
    return [ln.split() for ln in out.read_text().splitlines()] if out.exists() else []


def _check_dag(svc: QueueJobService, workers: Workers, jobs: list[dict[str, Any]], out: Path,
               parents: dict[str, list[str]]) -> None:
    """Every succeeded job ran once, after its parents, on the node and GPUs the policy gave it."""
    ids = {j["name"]: j["id"] for j in jobs}
    lines = _lines(out)
    order = [ln[0] for ln in lines]
    st = svc.queue.state
    for name, deps in parents.items():
        if svc.get(ids[name])["state"] != "succeeded":
            continue
        assert order.count(name) == 1, (name, order)
        [held] = [u.uuids for u in svc.queue.usage if u.job == ids[name]]  # what the policy gave it
        node = st.names[st.locate(held[0])[0]]
        ran = lines[order.index(name)]
        assert ran[1] == node, f"{name} placed on {node} but ran on {ran[1]}"
        assert ran[2] == ",".join(held) and ran[3] == "1"
        assert workers.local_log(node, ids[name]).exists()
        for d in deps:
            assert order.index(d) < order.index(name), f"{name} ran before its dependency {d}: {order}"


def test_batch_with_dependencies_runs_in_order_on_the_placed_nodes(workers: Workers, redis_url: str,
                                                                   tmp_path: Path) -> None:
    svc = celery_service(redis_url, tmp_path)
    out = tmp_path / "ran.txt"
    parents = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["d"], "f": [], "g": [], "h": ["f", "g"],
               "l": ["e", "h"], "bad": [], "blocked": ["bad"], "anyway": ["bad"]}
    spec = [{"name": n, "client_id": n, "gpus": 2 if n in ("f", "g") else 1, "depends_on": deps,
             "command": _write(n, out, 2 if n == "bad" else 0)} for n, deps in parents.items()]
    spec[-1]["on_failure"] = "continue"
    jobs = svc.submit(spec, "alice", "ml")
    ids = {j["name"]: j["id"] for j in jobs}
    done = ("succeeded", "failed")
    run_until(svc, lambda: all(svc.get(ids[n])["state"] in done for n in parents if n != "blocked"), 45,
              "the batch to finish")
    try:
        _check_dag(svc, workers, jobs, out, parents)
        states = {n: svc.get(i)["state"] for n, i in ids.items()}
        assert states == {**dict.fromkeys(parents, "succeeded"), "bad": "failed", "blocked": "pending"}
        bad, blocked = svc.get(ids["bad"]), svc.get(ids["blocked"])
        assert (bad["exit_code"], bad["reason"]) == (2, "exited with code 2")
        assert blocked["reason"] == f"blocked: dependency {ids['bad']} failed (exited with code 2)"
        assert len({ln[1] for ln in _lines(out)}) == 3  # the first wave fills all three nodes
        # the log, copied to Redis by the worker, is what the control plane serves
        text, offset = svc.logs(ids["a"])
        a_node = next(ln[1] for ln in _lines(out) if ln[0] == "a")
        assert f"--- gpufleet: attempt 1 on {a_node}" in text and "hello from a" in text
        assert "exited with 0" in text and offset == len(text.encode())
        assert "worker settings: []" in text  # the worker's GPUFLEET_* settings (a broker password) stay out
        assert svc.logs(ids["a"], offset) == ("", offset)
        assert not svc.allocations()
    finally:
        svc.close()


def test_cancel_sends_sigterm_then_sigkill_to_the_job(workers: Workers, redis_url: str, tmp_path: Path) -> None:
    svc = celery_service(redis_url, tmp_path, grace_s=0.5)
    stubborn = [sys.executable, "-c", "import os, signal, time; signal.signal(signal.SIGTERM, lambda *a: "
                "print('got TERM', flush=True)); print('pid', os.getpid(), flush=True); time.sleep(60)"]
    [job] = svc.submit([{"name": "stubborn", "gpus": 1, "command": stubborn}], "bob", None)
    try:
        run_until(svc, lambda: "pid " in svc.logs(job["id"])[0], 30, "the job to start")
        assert svc.get(job["id"])["state"] == "running"
        pid = int(re.search(r"pid (\d+)", svc.logs(job["id"])[0]).group(1))  # type: ignore[union-attr]
        t0 = time.monotonic()
        assert svc.cancel(job["id"])["state"] == "cancelled"
        run_until(svc, lambda: not svc.executor.active(job["id"]), 15, "the worker to report the kill")
        assert time.monotonic() - t0 >= 0.5
        log = svc.logs(job["id"])[0]
        assert "got TERM" in log and "attempt 1 exited with -9" in log
        assert not Path(f"/proc/{pid}").exists()
        assert not svc.allocations()
    finally:
        svc.close()


def test_a_restarted_service_reattaches_to_its_celery_runs(workers: Workers, redis_url: str, tmp_path: Path) -> None:
    def service() -> QueueJobService:
        ex = CeleryExecutor(redis_url, heartbeat_timeout_s=HEARTBEAT_TIMEOUT, node_check_s=0.2)
        return db_service(cluster_from_devices(twin(nodes=3, gpus=2).devices()), ex, tmp_path, grace_s=0.5)

    long = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(3); print('done', flush=True)"]
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, lambda *a: "
                "print('got TERM', flush=True)); print('up', flush=True); time.sleep(60)"]
    first = service()
    jobs = first.submit([{"name": "long", "gpus": 1, "command": long},
                         {"name": "stubborn", "gpus": 1, "command": stubborn}], "bob", None)
    ids = {j["name"]: j["id"] for j in jobs}
    run_until(first, lambda: all("up" in first.logs(i)[0] for i in ids.values()), 30, "both jobs to start")
    handle = first.queue.jobs[ids["long"]].run["handle"]  # type: ignore[index]
    assert handle == {"task_id": f"{ids['long']}.1", "node": first.get(ids["long"])["node"],
                      "run_key": run_key(ids["long"], 1)}
    first.close()  # serve stops; the workers run on
    second = service()
    try:
        run_until(second, lambda: second.get(ids["long"])["state"] == "succeeded", 30, "the reattached run")
        assert "done" in second.logs(ids["long"])[0] and second.get(ids["long"])["restarts"] == 0
        assert second.cancel(ids["stubborn"])["state"] == "cancelled"  # cancel still reaches the worker
        run_until(second, lambda: not second.executor.active(ids["stubborn"]), 15, "the worker to end it")
        assert "got TERM" in second.logs(ids["stubborn"])[0]
        assert all(second.queue.jobs[i].run is None for i in ids.values())
    finally:
        second.close()


def test_worker_shutdown_hands_its_running_job_back(workers: Workers, redis_url: str, tmp_path: Path) -> None:
    svc = celery_service(redis_url, tmp_path)
    seen: list[tuple[str, str, str]] = []
    svc.queue.listeners.append(lambda rec, old, new, reason, now: seen.append((old, new, reason or "")))
    out = tmp_path / "ran.txt"
    checkpointing = [sys.executable, "-c", "import os, signal, sys, time\n"
                     "if os.environ['GPUFLEET_ATTEMPT'] == '1':\n"
                     "    signal.signal(signal.SIGTERM, lambda *a: (print('TERM: checkpoint', flush=True), "
                     "sys.exit(0)))\n"
                     "    print('pid', os.getpid(), flush=True); time.sleep(60)\n"
                     "open(sys.argv[1], 'a').write(os.environ['TEST_WORKER'] + '\\n')\n", str(out)]
    [job] = svc.submit([{"name": "handback", "gpus": 1, "command": checkpointing}], "bob", None)
    jid, first = job["id"], job["node"]
    try:
        run_until(svc, lambda: "pid " in svc.logs(jid)[0], 30, "the first attempt to start")
        worker = workers.procs[first]
        os.kill(worker.pid, signal.SIGTERM)  # systemctl stop: a warm shutdown
        run_until(svc, lambda: svc.get(jid)["state"] == "succeeded", 30, "the job to finish elsewhere")
        assert worker.proc.wait(timeout=15) == 0
        lost = [r for old, new, r in seen if new == "interrupted"]
        assert len(lost) == 1 and lost[0] == f"worker {first}.{worker.pid}@{socket.gethostname()} shut down"
        assert "TERM: checkpoint" in svc.logs(jid)[0]
        assert out.read_text().split() != [first] and len(out.read_text().split()) == 1
    finally:
        svc.close()
        workers.start(first)
        workers.wait(first)


def test_killed_worker_interrupts_its_job_which_finishes_elsewhere(workers: Workers, redis_url: str,
                                                                    tmp_path: Path) -> None:
    svc = celery_service(redis_url, tmp_path)
    seen: list[tuple[str, str, str]] = []
    svc.queue.listeners.append(lambda rec, old, new, reason, now: seen.append((old, new, reason or "")))
    out = tmp_path / "ran.txt"
    slow_first = [sys.executable, "-c", "import os, subprocess, sys, time\n"
                  "if os.environ['GPUFLEET_ATTEMPT'] == '1':\n"
                  "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                  "    print('pid', os.getpid(), 'child', child.pid, flush=True); time.sleep(60)\n"
                  "open(sys.argv[1], 'a').write(os.environ['TEST_WORKER'] + '\\n')\n", str(out)]
    [job] = svc.submit([{"name": "k9", "gpus": 1, "command": slow_first}], "bob", None)
    jid, first, pids = job["id"], job["node"], [0, 0]
    try:
        run_until(svc, lambda: "child " in svc.logs(jid)[0], 30, "the first attempt to start")
        pids = [int(x) for x in re.search(r"pid (\d+) child (\d+)", svc.logs(jid)[0]).groups()]  # type: ignore[union-attr]
        pid, child = pids
        os.kill(workers.procs[first].pid, signal.SIGKILL)
        run_until(svc, lambda: svc.get(jid)["restarts"] == 1, 20, "the run to be declared lost")
        st = svc.queue.state
        assert st.node_health[st.node_index(first)] == Health.CORDONED  # no worker: no new work there
        run_until(svc, lambda: svc.get(jid)["state"] == "succeeded", 30, "the job to finish elsewhere")
        held = [u.uuids for u in svc.queue.usage if u.job == jid]
        assert len(held) == 2 and held[0] == tuple(job["placement"])
        second = st.names[st.locate(held[1][0])[0]]
        assert second != first and out.read_text().split() == [second]  # ran (to the end) only there
        lost = [r for old, new, r in seen if new == "interrupted"]
        assert len(lost) == 1 and "stopped sending heartbeats" in lost[0] and first in lost[0]
        log = svc.logs(jid)[0]
        assert f"attempt 2 on {second}" in log and "(resume)" in log
        assert workers.redis.hget(run_key(jid, 1), "state") == b"lost"
        # the job's process died with its worker (pdeathsig); what it started is ended by the node's next worker
        wait_until(lambda: not _alive(pid), 5, "the orphaned first attempt to die")
        assert _alive(child)
        workers.start(first)
        workers.wait(first)
        wait_until(lambda: not _alive(child), 5, "the first attempt's child to be reaped")
        assert "killed what was left of run " + f"{jid}.1" in workers.procs[first].log()
    finally:
        svc.close()
        for p in pids:  # only when the test failed
            if p and _alive(p):
                os.kill(p, signal.SIGKILL)
        if not workers.procs[first].alive():
            workers.start(first)
            workers.wait(first)


@pytest.mark.slow
def test_fifty_jobs_with_dependencies(workers: Workers, redis_url: str, tmp_path: Path) -> None:
    svc = celery_service(redis_url, tmp_path)
    out = tmp_path / "ran.txt"
    rng = random.Random(16)
    parents = {f"w{i}": sorted({f"w{rng.randrange(i)}" for _ in range(rng.randint(0, 2))}) if i else []
               for i in range(50)}
    jobs = svc.submit([{"name": n, "client_id": n, "gpus": 1, "depends_on": d, "command": _write(n, out)}
                       for n, d in parents.items()], "alice", "ml")
    try:
        run_until(svc, lambda: all(svc.get(j["id"])["state"] == "succeeded" for j in jobs), 120, "50 jobs")
        _check_dag(svc, workers, jobs, out, parents)
        assert len(_lines(out)) == 50
    finally:
        svc.close()


def test_worker_cli_with_an_unreachable_broker_is_one_error() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    p = subprocess.run([GPUFLEET, "worker", "--node", "n1", "--broker", url], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "GPUFLEET_DATA_DIR": "/tmp/gpufleet-worker-test"})
    assert p.returncode == 5, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpufleet: error: cannot reach the Celery broker at redis://")
    assert "hunter2" not in p.stderr and "****" in p.stderr and "Traceback" not in p.stderr


def test_executor_settings_errors() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    with pytest.raises(ExecutorError) as err:
        make_executor(Settings(executor={"kind": "celery", "celery_broker_url": url}))  # type: ignore[arg-type]
    assert isinstance(err.value, BackendUnavailable) and "hunter2" not in str(err.value)
    with pytest.raises(ConfigError, match=r"must exceed jobs\.max_runtime_s"):
        make_executor(Settings(executor={"kind": "celery", "celery_broker_url": url,  # type: ignore[arg-type]
                                         "celery_visibility_timeout_s": 60}, jobs={"max_runtime_s": 3600}))
    with pytest.raises(ConfigError, match="must be a Redis URL"):
        CeleryExecutor("amqp://127.0.0.1:5672//")


def test_make_executor_configures_celery_for_long_jobs(redis_url: str) -> None:
    ex = make_executor(Settings(executor={"kind": "celery", "celery_broker_url": redis_url},  # type: ignore[arg-type]
                                jobs={"max_runtime_s": 7200}))  # type: ignore[arg-type]
    assert isinstance(ex, CeleryExecutor)
    conf = ex.app.conf
    assert conf.task_acks_late and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 7200 + 3600
    ex.close()


def test_a_broker_outage_delays_a_start_instead_of_failing_the_job(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r1")
    ex = CeleryExecutor(server.url, heartbeat_timeout_s=HEARTBEAT_TIMEOUT)
    svc = service(twin(nodes=1, gpus=1), ex, tmp_path)
    client = redis_lib.Redis.from_url(server.url)
    try:
        server.stop()
        t0 = time.monotonic()
        [job] = svc.submit([{"name": "outage", "gpus": 1, "command": [sys.executable, "-c", "pass"]}], "bob", None)
        assert time.monotonic() - t0 < 10
        for _ in range(3):
            svc.tick(time.time())
        assert svc.get(job["id"])["state"] == "starting" and ex.active(job["id"])
        restarted = ServerProcess([server.server.args[0], "--port", str(server.port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no"], tmp_path / "r2.log")
        try:
            wait_until(lambda: client.ping(), 20, "redis-server again")
            time.sleep(2.1)  # past the executor's back-off
            svc.tick(time.time())
            record = client.hgetall(run_key(job["id"], 1))
            assert record[b"state"] == b"queued" and record[b"node"] == job["node"].encode()
            assert client.llen(f"gpufleet.node.{job['node']}") == 1  # the task waits for that node's worker
            svc.cancel(job["id"])
            svc.tick(time.time())
            assert not ex.active(job["id"]) and client.hget(run_key(job["id"], 1), "state") == b"stopped"
        finally:
            client.close()
            svc.close()
            restarted.stop()
    finally:
        server.stop()
