"""The local executor on twin GPUs: real subprocesses, the real torch example, a twin GPU fault mid-run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
from gpufleet.allocator.state import Health

from gpufleet.executors.local import LocalExecutor
from tests.executors.helpers import EXAMPLE, run_until, service, train_cmd, twin


def _state(svc, jid):  # type: ignore[no-untyped-def]
    return svc.get(jid)["state"]


def _log(svc, jid) -> str:  # type: ignore[no-untyped-def]
    return svc.logs(jid)[0]


def test_fault_mid_run_resumes_elsewhere_bit_identical(tmp_path: Path) -> None:
    steps, every = 60, 5
    ref = tmp_path / "ref"
    env = {**os.environ, "GPUFLEET_CHECKPOINT_DIR": str(ref)}
    subprocess.run([*train_cmd(steps, every)], env=env, check=True, capture_output=True, timeout=120)

    tw = twin()
    svc = service(tw, LocalExecutor(systemd="off"), tmp_path / "data", grace_s=10)
    [job] = svc.submit([{"name": "train", "gpus": 1, "task_type": "training",
                         "command": train_cmd(steps, every, sleep=0.05)}], "alice", "ml")
    jid, first_gpu = job["id"], job["placement"][0]
    run_until(svc, lambda: "checkpoint at step 15" in _log(svc, jid), 60, "three checkpoints")
    assert _state(svc, jid) == "running"

    # XID 79 on the job's GPU: the twin reports it lost (gpu_up 0)
    tw.inject_fault(first_gpu, "fall_off_bus", at=tw.now + 1)
    tw.advance(tw.now + 120)
    node = next(i for i, ds in enumerate(tw.devices_by_node) if any(d.uuid == first_gpu for d in ds))
    snap = tw.snapshot(node)
    assert snap.up[first_gpu] == 0
    svc.observe(snap, time.time())
    after = svc.get(jid)
    assert after["restarts"] == 1 and first_gpu not in after["placement"]
    assert svc.queue.state.gpu_health[svc.queue.state.locate(first_gpu)] == Health.LOST

    run_until(svc, lambda: _state(svc, jid) == "succeeded", 90, "the resumed job to finish")
    log = _log(svc, jid)
    stopped_at = int(re.search(r"stopped by SIGTERM at step (\d+)", log).group(1))  # type: ignore[union-attr]
    resumed_from = int(re.search(r"resumed from step (\d+)", log).group(1))  # type: ignore[union-attr]
    assert resumed_from == stopped_at  # the last checkpoint was written in the grace period
    lost = stopped_at - resumed_from
    assert 0 <= lost <= every
    final = svc.get(jid)
    assert first_gpu not in final["placement"]
    out = Path(svc.checkpoint_dir / jid / "final.pt")
    got, want = torch.load(out), torch.load(ref / "final.pt")
    assert got["step"] == want["step"] == steps
    for k, v in want["model"].items():
        assert torch.equal(got["model"][k], v), k
    digest = re.findall(r"weights sha256 (\w+)", log)
    assert len(digest) == 1


def test_env_shows_exactly_the_placed_gpus_and_exit_codes_are_kept(tmp_path: Path) -> None:
    tw = twin()
    svc = service(tw, LocalExecutor(systemd="off"), tmp_path)
    show = [sys.executable, "-c", "import os; print('CVD=' + os.environ['CUDA_VISIBLE_DEVICES']); "
            "print('ROCR=' + os.environ['ROCR_VISIBLE_DEVICES']); print('CKPT=' + os.environ['GPUFLEET_CHECKPOINT_DIR'])"]
    jobs = svc.submit([{"name": "show", "gpus": 2, "command": show},
                       {"name": "fail", "gpus": 1, "command": [sys.executable, "-c", "import sys; sys.exit(3)"]},
                       {"name": "missing", "gpus": 1, "command": ["/nonexistent/binary"]}], "bob", None)
    ids = {j["name"]: j["id"] for j in jobs}
    run_until(svc, lambda: all(_state(svc, i) in ("succeeded", "failed") for i in ids.values()), 30, "exits")
    show_job = svc.get(ids["show"])
    assert show_job["state"] == "succeeded" and show_job["exit_code"] == 0
    log = _log(svc, ids["show"])
    assert f"CVD={','.join(show_job['placement'])}" in log
    assert re.search(r"ROCR=\d,\d", log) and f"CKPT={svc.checkpoint_dir / ids['show']}" in log
    fail = svc.get(ids["fail"])
    assert (fail["state"], fail["exit_code"], fail["reason"]) == ("failed", 3, "exited with code 3")
    miss = svc.get(ids["missing"])
    assert miss["state"] == "failed" and "cannot start '/nonexistent/binary'" in miss["reason"]
    assert not svc.allocations()  # every GPU was given back


def test_retries_with_backoff_then_fail(tmp_path: Path) -> None:
    svc = service(twin(), LocalExecutor(systemd="off"), tmp_path)
    [job] = svc.submit([{"name": "flaky", "gpus": 1, "retries": 2, "retry_backoff_s": 0.2,
                         "command": [sys.executable, "-c", "print('try'); raise SystemExit(1)"]}], "bob", None)
    run_until(svc, lambda: _state(svc, job["id"]) == "failed", 30, "retries to run out")
    assert _log(svc, job["id"]).count("try") == 3 and svc.get(job["id"])["restarts"] == 2


def test_cancel_terms_then_kills_the_process_group(tmp_path: Path) -> None:
    svc = service(twin(), LocalExecutor(systemd="off"), tmp_path, grace_s=0.5)
    stubborn = [sys.executable, "-c", "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, "
                "lambda *a: print('got TERM', flush=True)); child = subprocess.Popen([sys.executable, '-c', "
                "'import time; time.sleep(60)']); print('child', child.pid, flush=True); time.sleep(60)"]
    [job] = svc.submit([{"name": "stubborn", "gpus": 1, "command": stubborn}], "bob", None)
    run_until(svc, lambda: "child" in _log(svc, job["id"]), 20, "the job to start its child")
    child = int(re.search(r"child (\d+)", _log(svc, job["id"])).group(1))  # type: ignore[union-attr]
    t0 = time.monotonic()
    assert svc.cancel(job["id"])["state"] == "cancelled"
    run_until(svc, lambda: not svc.executor.active(job["id"]), 10, "the group to be killed")
    assert time.monotonic() - t0 >= 0.5
    assert "got TERM" in _log(svc, job["id"])
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text().lower()


def test_dependencies_block_or_continue_on_failure(tmp_path: Path) -> None:
    svc = service(twin(), LocalExecutor(systemd="off"), tmp_path)
    ok, bad = [sys.executable, "-c", "pass"], [sys.executable, "-c", "raise SystemExit(2)"]
    jobs = svc.submit([{"name": "parent", "client_id": "p", "gpus": 1, "command": bad},
                       {"name": "blocked", "gpus": 1, "depends_on": ["p"], "command": ok},
                       {"name": "anyway", "gpus": 1, "depends_on": ["p"], "on_failure": "continue", "command": ok}],
                      "bob", None)
    ids = {j["name"]: j["id"] for j in jobs}
    run_until(svc, lambda: _state(svc, ids["anyway"]) == "succeeded", 30, "the continue dependant")
    blocked = svc.get(ids["blocked"])
    assert blocked["state"] == "pending"
    assert blocked["reason"] == f"blocked: dependency {ids['parent']} failed (exited with code 2)"


def test_cordon_and_drain(tmp_path: Path) -> None:
    tw = twin(nodes=2, gpus=2)
    svc = service(tw, LocalExecutor(systemd="off"), tmp_path, grace_s=10)
    st = svc.queue.state
    cordoned = list(st.uuids[0])
    for u in cordoned:
        svc.set_gpu_health(u, "cordoned", reason="maintenance", by="ops")
    sleeper = [sys.executable, "-c", "import time; time.sleep(0.3)"]
    jobs = svc.submit([{"name": f"s{i}", "gpus": 1, "command": sleeper} for i in range(6)], "bob", None)
    run_until(svc, lambda: all(_state(svc, j["id"]) == "succeeded" for j in jobs), 40, "all sleepers")
    assert not [u for u in svc.queue.usage for g in u.uuids if g in cordoned]  # 0 jobs started there
    for u in cordoned:
        svc.set_gpu_health(u, "ok")

    # drain node 1: the preemptible trainer stops after a checkpoint and moves; the inference job finishes
    for u in st.uuids[0]:
        svc.set_gpu_health(u, "cordoned")
    train, serve = svc.submit([
        {"name": "train", "gpus": 1, "task_type": "training", "command": train_cmd(400, 5, sleep=0.05)},
        {"name": "serve", "gpus": 1, "task_type": "inference",
         "command": [sys.executable, "-c", "import time; time.sleep(1.5); print('served')"]}], "bob", None)
    assert {train["node"], serve["node"]} == {st.names[1]}
    run_until(svc, lambda: "checkpoint at step 5" in _log(svc, train["id"]), 40, "the trainer's first checkpoint")
    for u in st.uuids[0]:
        svc.set_gpu_health(u, "ok")
    assert svc.drain_node(st.names[1]) == [train["id"]]
    run_until(svc, lambda: _state(svc, serve["id"]) == "succeeded", 30, "the inference job to finish")
    run_until(svc, lambda: "resumed from step" in _log(svc, train["id"]), 40, "the trainer to resume elsewhere")
    moved = svc.get(train["id"])
    assert moved["node"] == st.names[0] and "stopped by SIGTERM" in _log(svc, train["id"])
    assert svc.get(serve["id"])["restarts"] == 0 and "served" in _log(svc, serve["id"])
    svc.cancel(train["id"])
    run_until(svc, lambda: not svc.executor.active(train["id"]), 15, "the trainer to stop")
    assert EXAMPLE.exists()


def test_without_systemd_the_job_runs_and_its_log_says_limits_were_not_applied(tmp_path: Path) -> None:
    import pytest
    from gpufleet.exporter.errors import ConfigError

    from gpufleet.executors.base import RunSpec
    from gpufleet.executors.local import systemd_available, systemd_prefix

    if systemd_available():  # this check is for hosts without systemd (CI containers)
        pytest.skip("this host runs systemd")
    ex = LocalExecutor()  # systemd = auto
    assert not ex.use_systemd
    svc = service(twin(), ex, tmp_path)
    [job] = svc.submit([{"name": "capped", "gpus": 1, "command": [sys.executable, "-c", "print('ran')"]}], "bob", None)
    run_until(svc, lambda: _state(svc, job["id"]) == "succeeded", 20, "the job")
    log = _log(svc, job["id"])
    assert "ran" in log
    assert "cgroup limits not applied: this host has no systemd (executor.systemd = auto)" in log
    with pytest.raises(ConfigError, match=r"^executor.systemd = on, but this host has no systemd"):
        LocalExecutor(systemd="on")
    off = service(twin(), LocalExecutor(systemd="off"), tmp_path / "off")
    [quiet] = off.submit([{"name": "q", "gpus": 1, "command": [sys.executable, "-c", "pass"]}], "bob", None)
    run_until(off, lambda: _state(off, quiet["id"]) == "succeeded", 20, "the job")
    assert "limits not applied" not in _log(off, quiet["id"])  # off: the operator chose no cgroups
    run = RunSpec(job_id="j1-x", attempt=2, command=["t"], node="n", gpu_indexes=[0], gpu_uuids=["g"],
                  log_path="/l", checkpoint_dir="/c", cpu_milli=1500, memory_mib=2048)
    assert systemd_prefix(run) == ["systemd-run", "--scope", "--quiet", "--collect", "--unit=gpufleet-j1-x-2",
                                   "--property=MemoryMax=2048M", "--property=CPUQuota=150%", "--"]


def test_max_runtime_stops_the_run_and_fails_the_job(tmp_path: Path) -> None:
    """The runtime limit (a deadline heap in the job service): the run past it is stopped, the job fails
    with the limit named; a job within its limit is left alone."""
    svc = service(twin(), LocalExecutor(systemd="off"), tmp_path, grace_s=0.5)
    long = [sys.executable, "-c", "import time; time.sleep(30)"]
    short = [sys.executable, "-c", "import time; time.sleep(0.5)"]
    jobs = svc.submit([{"name": "long", "gpus": 1, "max_runtime_s": 1.0, "command": long},
                       {"name": "short", "gpus": 1, "max_runtime_s": 20.0, "command": short}], "bob", None)
    ids = {j["name"]: j["id"] for j in jobs}
    run_until(svc, lambda: all(_state(svc, i) in ("succeeded", "failed") for i in ids.values()), 25, "both")
    long_job = svc.get(ids["long"])
    assert long_job["state"] == "failed" and long_job["reason"] == "stopped after max_runtime_s 1"
    assert svc.get(ids["short"])["state"] == "succeeded"
