"""The run table: a restarted job service reattaches to local runs by their process group, and a run that was
killed while the service was down is interrupted and requeued (it resumes from its checkpoint)."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

from gpufleet.executors.local import LocalExecutor, leader_alive
from gpufleet.jobs import QueueJobService
from gpufleet.wiring import cluster_from_devices
from tests.executors.helpers import db_service, run_until, train_cmd, twin
from tests.servers import wait_until


def _service(tmp: Path, grace_s: float = 10.0) -> QueueJobService:
    return db_service(cluster_from_devices(twin().devices()), LocalExecutor(systemd="off"), tmp, grace_s=grace_s)


def _sleep_then(seconds: float, code: int) -> list[str]:
    return [sys.executable, "-c", f"import time; print('up', flush=True); time.sleep({seconds}); "
            f"print('bye', flush=True); raise SystemExit({code})"]


def test_running_local_jobs_are_reattached_by_process_group(tmp_path: Path) -> None:
    first = _service(tmp_path)
    jobs = first.submit([{"name": "ok", "gpus": 1, "command": _sleep_then(2.0, 0)},
                         {"name": "bad", "gpus": 1, "command": _sleep_then(2.0, 3)},
                         {"name": "long", "gpus": 1, "command": _sleep_then(120, 0)}], "bob", None)
    ids = {j["name"]: j["id"] for j in jobs}
    run_until(first, lambda: all(first.get(i)["state"] == "running" for i in ids.values()), 20, "all running")
    handles = {n: first.queue.jobs[i].run for n, i in ids.items()}
    assert all(h is not None and h["executor"] == "local" and h["handle"]["pgid"] > 0 for h in handles.values())
    # serve dies (no close): the jobs run on in their own process groups

    second = _service(tmp_path)
    assert {second.get(i)["state"] for i in ids.values()} == {"running"}
    assert second.queue.jobs[ids["long"]].run == handles["long"]  # read back from the database
    run_until(second, lambda: second.get(ids["ok"])["state"] == "succeeded"
              and second.get(ids["bad"])["state"] == "failed", 30, "the reattached runs to end")
    assert second.get(ids["ok"])["exit_code"] == 0
    bad = second.get(ids["bad"])
    assert (bad["exit_code"], bad["reason"], bad["restarts"]) == (3, "exited with code 3", 0)  # from its exit file
    assert "bye" in second.logs(ids["ok"])[0] and "exited with 0" in second.logs(ids["ok"])[0]

    pgid = int(handles["long"]["handle"]["pgid"])  # type: ignore[index]
    assert leader_alive(pgid, ids["long"])
    assert second.cancel(ids["long"])["state"] == "cancelled"  # cancel still works on a reattached run
    run_until(second, lambda: not second.executor.active(ids["long"]), 20, "the reattached run to stop")
    assert not leader_alive(pgid, ids["long"])
    assert all(second.queue.jobs[i].run is None for i in ids.values()) and not second.allocations()
    second.close()


def test_a_local_job_killed_while_serve_was_down_is_interrupted_and_resumes(tmp_path: Path) -> None:
    first = _service(tmp_path)
    [job] = first.submit([{"name": "train", "gpus": 1, "task_type": "training",
                           "command": train_cmd(60, 5, sleep=0.05)}], "alice", "ml")
    jid = job["id"]
    run_until(first, lambda: "checkpoint at step 10" in first.logs(jid)[0], 60, "two checkpoints")
    pgid = int(first.queue.jobs[jid].run["handle"]["pgid"])  # type: ignore[index]
    # serve dies, then the job is killed while it is down
    os.killpg(pgid, signal.SIGKILL)
    wait_until(lambda: not leader_alive(pgid, jid), 10, "the job to die", interval=0.05)

    second = _service(tmp_path)
    why: list[str] = []
    second.queue.listeners.append(lambda rec, old, new, reason, now: why.append(f"{old}>{new}: {reason}"))
    second.tick(time.time())
    assert why[:2] == [f"running>interrupted: process group {pgid} of attempt 1 was gone when serve restarted "
                       "without recording an exit code (killed)",
                       f"interrupted>requeued: requeued after process group {pgid} of attempt 1 was gone when "
                       "serve restarted without recording an exit code (killed)"]
    transitions = second.queue.store.transitions(jid)  # type: ignore[union-attr]
    steps = [(a, b) for a, b, _ in transitions]
    assert steps[steps.index(("running", "interrupted")):][:3] == [("running", "interrupted"), ("interrupted", "requeued"),
                                                                   ("requeued", "placed")]
    assert second.get(jid)["restarts"] == 1
    run_until(second, lambda: second.get(jid)["state"] == "succeeded", 90, "the requeued job to finish")
    log = second.logs(jid)[0]
    assert "was gone when serve restarted without recording an exit code" in log
    resumed = int(re.search(r"resumed from step (\d+)", log).group(1))  # type: ignore[union-attr]
    assert resumed >= 10 and "done: 60 steps" in log and "attempt 2 on" in log and "(resume)" in log
    second.close()


def test_an_orderly_stop_interrupts_local_runs_and_the_next_serve_runs_them_again(tmp_path: Path) -> None:
    first = _service(tmp_path, grace_s=2.0)
    [job] = first.submit([{"name": "long", "gpus": 1, "command": _sleep_then(120, 0)}], "bob", None)
    jid = job["id"]
    run_until(first, lambda: first.get(jid)["state"] == "running", 20, "running")
    pgid = int(first.queue.jobs[jid].run["handle"]["pgid"])  # type: ignore[index]
    first.close()
    assert not leader_alive(pgid, jid)
    second = _service(tmp_path)
    got = second.get(jid)
    assert got["restarts"] == 1 and got["reason"] == "requeued after serve stopped; the run was stopped with it"
    run_until(second, lambda: second.get(jid)["state"] == "running", 20, "the second attempt")
    assert second.queue.jobs[jid].run["attempt"] == 2  # type: ignore[index]
    second.close()


def test_a_run_still_stopping_at_the_restart_is_stopped_by_the_new_service(tmp_path: Path) -> None:
    first = _service(tmp_path, grace_s=60.0)
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, lambda *a: "
                "print('got TERM', flush=True)); print('up', flush=True); time.sleep(120)"]
    [job] = first.submit([{"name": "stubborn", "gpus": 1, "command": stubborn}], "bob", None)
    jid = job["id"]
    run_until(first, lambda: "up" in first.logs(jid)[0], 20, "the job to start")
    pgid = int(first.queue.jobs[jid].run["handle"]["pgid"])  # type: ignore[index]
    assert first.cancel(jid)["state"] == "cancelled"  # SIGTERM, ignored; then serve dies within the grace
    second = _service(tmp_path, grace_s=0.5)
    assert second.queue.jobs[jid].run is not None and leader_alive(pgid, jid)
    run_until(second, lambda: not second.executor.active(jid), 20, "the new service to finish the stop")
    assert not leader_alive(pgid, jid) and second.queue.jobs[jid].run is None
    assert second.get(jid)["state"] == "cancelled"
    second.close()
