"""The Slurm executor against a real single-host Slurm (slurmctld + slurmd, 2 fake GPUs in GRES): sbatch on
the chosen node, exit codes and logs, a dependency chain, cancel, a drained node -> requeue and resume."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import JobQueue
from gpufleet.allocator.state import ClusterState, NodeSpec

from gpufleet.executors.base import RunSpec
from gpufleet.executors.slurm import SlurmExecutor, batch_script
from gpufleet.integrations.slurm import SlurmClient
from gpufleet.jobs import QueueJobService
from gpufleet.settings import JobsSettings
from tests.executors.helpers import db_service, run_until, train_cmd
from tests.servers import Slurm

pytestmark = [pytest.mark.server, pytest.mark.slow]
NODE = Slurm.NODE


@pytest.fixture(scope="module")
def cluster() -> Iterator[Slurm]:
    s = Slurm(gpus=2, cpus=4)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def slurm(cluster: Slurm) -> Iterator[Slurm]:
    yield cluster
    cluster.clear_queue()


def executor(slurm: Slurm, tmp: Path, grace_s: float = 10.0, use_json: bool = True) -> SlurmExecutor:
    return SlurmExecutor(SlurmClient(conf=str(slurm.conf)), grace_s=grace_s,
                         poll_interval_s=0.2, gpu_types={"H100": "h100"}, use_json=use_json)


def service(ex: SlurmExecutor, tmp: Path, grace_s: float = 10.0) -> QueueJobService:
    state = ClusterState.from_specs([NodeSpec(NODE, 4000, 4000, 2, "A100", 80 << 30,
                                              uuids=[f"{NODE}/gpu0", f"{NODE}/gpu1"])])
    return QueueJobService(JobQueue(state, make_policy("default")), clock=time.time, executor=ex,
                           settings=JobsSettings(grace_s=grace_s), data_dir=tmp)


def _state(svc: QueueJobService, jid: str) -> str:
    return str(svc.get(jid)["state"])


def _log(svc: QueueJobService, jid: str) -> str:
    return svc.logs(jid)[0]


def test_submit_exit_codes_logs_and_reattach(slurm: Slurm, tmp_path: Path) -> None:
    ex = executor(slurm, tmp_path)
    svc = service(ex, tmp_path)
    show = [sys.executable, "-c", "import os; print('CVD=' + os.environ.get('CUDA_VISIBLE_DEVICES', '-'), "
            "'JOB=' + os.environ['GPUFLEET_JOB_ID'], 'RESUME=' + os.environ['GPUFLEET_RESUME'], "
            "'MINE=' + os.environ['MINE'], 'HOST=' + os.environ['SLURMD_NODENAME'])"]
    jobs = svc.submit([{"name": "show", "gpus": 1, "command": show, "env": {"MINE": "it's mine"}},
                       {"name": "fail", "gpus": 0.5, "command": [sys.executable, "-c", "raise SystemExit(3)"]}],
                      "bob", None)
    ids = {j["name"]: j["id"] for j in jobs}
    slurm_ids = {n: ex.slurm_id(i) for n, i in ids.items()}
    assert all(s and s.isdigit() for s in slurm_ids.values())
    recorded = {i: svc.queue.jobs[i].run for i in ids.values()}  # the run table: the job's row in the database
    assert {k: v["handle"]["slurm_job_id"] for k, v in recorded.items() if v} == {ids[n]: s for n, s in slurm_ids.items()}
    assert not (tmp_path / "slurm-runs.json").exists()  # no side file any more
    run_until(svc, lambda: all(_state(svc, i) in ("succeeded", "failed") for i in ids.values()), 60, "exits")
    done = svc.get(ids["show"])
    assert (done["state"], done["exit_code"]) == ("succeeded", 0)
    log = _log(svc, ids["show"])
    assert f"CVD=0 JOB={ids['show']} RESUME=0 MINE=it's mine HOST={NODE}" in log  # GRES set CVD
    assert f"(slurm job {slurm_ids['show']})" in log and log.rstrip().endswith("exited with 0")
    failed = svc.get(ids["fail"])
    assert (failed["state"], failed["exit_code"], failed["reason"]) == ("failed", 3, "exited with code 3")
    assert all(svc.queue.jobs[i].run is None for i in ids.values())  # ended runs leave the run table


def _db_service(slurm: Slurm, tmp: Path, grace_s: float = 10.0) -> QueueJobService:
    state = ClusterState.from_specs([NodeSpec(NODE, 4000, 4000, 2, "A100", 80 << 30,
                                              uuids=[f"{NODE}/gpu0", f"{NODE}/gpu1"])])
    ex = SlurmExecutor(SlurmClient(conf=str(slurm.conf)), state_file=tmp / "jobs" / "slurm-runs.json",
                       grace_s=grace_s, poll_interval_s=0.2)
    return db_service(state, ex, tmp, grace_s=grace_s)


def test_a_restarted_service_reattaches_to_its_slurm_jobs(slurm: Slurm, tmp_path: Path) -> None:
    first = _db_service(slurm, tmp_path, grace_s=1.0)
    sleep = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(4); print('done', flush=True)"]
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, lambda *a: "
                "print('got TERM', flush=True)); print('up', flush=True); time.sleep(120)"]
    jobs = first.submit([{"name": "long", "gpus": 1, "command": sleep},
                         {"name": "stubborn", "gpus": 1, "command": stubborn}], "bob", None)
    ids = {j["name"]: j["id"] for j in jobs}
    run_until(first, lambda: all("up" in _log(first, i) for i in ids.values()), 30, "both jobs to start")
    sids = {n: first.executor.slurm_id(i) for n, i in ids.items()}  # type: ignore[attr-defined]
    first.close()  # serve stops; Slurm runs on

    second = _db_service(slurm, tmp_path, grace_s=1.0)
    assert {n: second.executor.slurm_id(i) for n, i in ids.items()} == sids  # type: ignore[attr-defined]
    run_until(second, lambda: _state(second, ids["long"]) == "succeeded", 60, "the reattached job to finish")
    assert "done" in _log(second, ids["long"]) and second.get(ids["long"])["exit_code"] == 0
    assert second.cancel(ids["stubborn"])["state"] == "cancelled"  # cancel still works after the restart
    run_until(second, lambda: not second.executor.active(ids["stubborn"]), 30, "Slurm to end the job")
    assert "got TERM" in _log(second, ids["stubborn"])
    assert sids["stubborn"] not in slurm.cli("squeue", "-h", "-o", "%i").split()
    second.close()


def test_the_older_slurm_runs_file_is_imported_into_the_run_table(slurm: Slurm, tmp_path: Path) -> None:
    first = _db_service(slurm, tmp_path)
    code = [sys.executable, "-c", "import time; time.sleep(2); raise SystemExit(7)"]
    [job] = first.submit([{"name": "old", "gpus": 1, "command": code}], "bob", None)
    jid = job["id"]
    rec = first.queue.jobs[jid]
    run = dict(rec.run or {})
    # what an older gpufleet left: the job running in the database, its Slurm id only in slurm-runs.json
    legacy = tmp_path / "jobs" / "slurm-runs.json"
    legacy.write_text(json.dumps({"runs": {jid: {"slurm_id": run["handle"]["slurm_job_id"], "run": run["spec"]}}}))
    rec.run = None
    first.persist()

    second = _db_service(slurm, tmp_path)
    assert not legacy.exists() and legacy.with_name("slurm-runs.json.imported").exists()
    assert second.queue.jobs[jid].run["handle"] == run["handle"]  # type: ignore[index]
    run_until(second, lambda: _state(second, jid) == "failed", 60, "the imported run's exit")
    assert second.get(jid)["exit_code"] == 7


def test_dependency_chain_runs_in_order(slurm: Slurm, tmp_path: Path) -> None:
    svc = service(executor(slurm, tmp_path, use_json=False), tmp_path)  # the squeue/sinfo --format text
    out = tmp_path / "order.txt"

    def step(tag: str) -> list[str]:
        return [sys.executable, "-c", f"import time; time.sleep(0.3); open({str(out)!r}, 'a').write('{tag}\\n')"]
    jobs = svc.submit([{"name": "c", "client_id": "c", "gpus": 1, "depends_on": ["b"], "command": step("c")},
                       {"name": "b", "client_id": "b", "gpus": 1, "depends_on": ["a"], "command": step("b")},
                       {"name": "a", "client_id": "a", "gpus": 1, "command": step("a")}], "bob", None)
    run_until(svc, lambda: all(_state(svc, j["id"]) == "succeeded" for j in jobs), 90, "the chain")
    assert out.read_text().split() == ["a", "b", "c"]


def test_cancel_sends_term_then_cancels(slurm: Slurm, tmp_path: Path) -> None:
    svc = service(executor(slurm, tmp_path, grace_s=1.0), tmp_path, grace_s=1.0)
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, lambda *a: "
                "print('got TERM', flush=True)); print('up', flush=True); time.sleep(120)"]
    [job] = svc.submit([{"name": "stubborn", "gpus": 1, "command": stubborn}], "bob", None)
    sid = svc.executor.slurm_id(job["id"])  # type: ignore[attr-defined]
    run_until(svc, lambda: "up" in _log(svc, job["id"]), 30, "the job to start")
    assert svc.cancel(job["id"])["state"] == "cancelled"
    run_until(svc, lambda: not svc.executor.active(job["id"]), 30, "Slurm to end the job")
    assert "got TERM" in _log(svc, job["id"])  # the grace period, then scancel
    assert sid not in slurm.cli("squeue", "-h", "-o", "%i").split()
    assert not svc.allocations()


def test_a_drained_node_requeues_the_job_and_it_resumes(slurm: Slurm, tmp_path: Path) -> None:
    svc = service(executor(slurm, tmp_path, grace_s=15.0), tmp_path, grace_s=15.0)
    [job] = svc.submit([{"name": "train", "gpus": 1, "task_type": "training",
                         "command": train_cmd(120, 5, sleep=0.05)}], "alice", "ml")
    jid = job["id"]
    run_until(svc, lambda: "checkpoint at step 10" in _log(svc, jid), 60, "two checkpoints")
    slurm.cli("scontrol", "update", f"NodeName={NODE}", "State=DRAIN", "Reason=maintenance")
    run_until(svc, lambda: svc.get(jid)["restarts"] == 1, 40, "the job to be requeued")
    moved = svc.get(jid)
    assert moved["state"] in ("requeued", "pending") and not moved["placement"]  # not on the drained node
    assert "stopped by SIGTERM at step" in _log(svc, jid)
    slurm.cli("scontrol", "update", f"NodeName={NODE}", "State=RESUME")
    run_until(svc, lambda: _state(svc, jid) == "succeeded", 90, "the resumed job to finish")
    log = _log(svc, jid)
    stopped = int(re.search(r"stopped by SIGTERM at step (\d+)", log).group(1))  # type: ignore[union-attr]
    assert f"resumed from step {stopped}" in log and "done: 120 steps" in log
    assert "attempt 2 on" in log and "(resume)" in log
    script = (tmp_path / "jobs" / "logs" / "slurm" / f"{jid}.2.sh").read_text()
    assert "export GPUFLEET_RESUME=1" in script and f"export GPUFLEET_CHECKPOINT_DIR={svc.checkpoint_dir / jid}" in script


def test_sbatch_arguments(tmp_path: Path) -> None:
    ex = SlurmExecutor(SlurmClient(), gpu_types={"H100": "h100"},
                       partition="gpu", account="ml", gpu_request="gpus")
    run = RunSpec(job_id="j1-x", attempt=2, command=["train", "--lr", "0.1 0.2"], node="n7", gpu_indexes=[0, 1],
                  gpu_uuids=["a", "b"], log_path=str(tmp_path / "j1-x.log"), checkpoint_dir="/ck", resume=True,
                  gpu_type="H100", max_runtime_s=3601, cpu_milli=1500, memory_mib=2048, workdir="/w")
    args = ex.sbatch_args(run, tmp_path / "s.sh")
    for want in ("--nodelist=n7", "--gpus=h100:2", "--time=1:00:01", "--partition=gpu", "--account=ml",
                 "--cpus-per-task=2", "--mem=2048M", "--chdir=/w", "--no-requeue", "--open-mode=append",
                 f"--output={tmp_path / 'j1-x.log'}"):
        assert want in args, want
    assert not [a for a in args if a.startswith("--dependency")]  # no parent still in Slurm
    from gpufleet.executors.slurm import _Run

    ex.runs["j0-parent"] = _Run(RunSpec(job_id="j0-parent", attempt=1, command=["x"], node="n7", gpu_indexes=[],
                                        gpu_uuids=[], log_path="/l", checkpoint_dir="/c"), "4242", state="RUNNING")
    dependant = RunSpec(**{**run.to_dict(), "depends_on": ["j0-parent", "j-gone"]})
    assert "--dependency=afterok:4242" in ex.sbatch_args(dependant, tmp_path / "s.sh")
    script = batch_script(run, tmp_path / "rc")
    assert "train --lr '0.1 0.2' < /dev/null &" in script and "export GPUFLEET_RESUME=1" in script
    assert "CUDA_VISIBLE_DEVICES=" not in script  # Slurm's GRES sets it on the node
