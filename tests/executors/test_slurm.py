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
from tests.executors.helpers import run_until, train_cmd
from tests.servers import Slurm, wait_until

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
    return SlurmExecutor(SlurmClient(conf=str(slurm.conf)), state_file=tmp / "slurm-runs.json", grace_s=grace_s,
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
    recorded = json.loads((tmp_path / "slurm-runs.json").read_text())["runs"]
    assert {k: v["slurm_id"] for k, v in recorded.items()} == {ids[n]: s for n, s in slurm_ids.items()}
    run_until(svc, lambda: all(_state(svc, i) in ("succeeded", "failed") for i in ids.values()), 60, "exits")
    done = svc.get(ids["show"])
    assert (done["state"], done["exit_code"]) == ("succeeded", 0)
    log = _log(svc, ids["show"])
    assert f"CVD=0 JOB={ids['show']} RESUME=0 MINE=it's mine HOST={NODE}" in log  # GRES set CVD
    assert f"(slurm job {slurm_ids['show']})" in log and log.rstrip().endswith("exited with 0")
    failed = svc.get(ids["fail"])
    assert (failed["state"], failed["exit_code"], failed["reason"]) == ("failed", 3, "exited with code 3")
    assert json.loads((tmp_path / "slurm-runs.json").read_text())["runs"] == {}

    # a restarted serve: a new executor over the same state file goes on tracking a run the old one started
    run = RunSpec(job_id="j9-long", attempt=1, command=[sys.executable, "-c", "import time; time.sleep(1.5); "
                  "raise SystemExit(7)"], node=NODE, gpu_indexes=[0], gpu_uuids=[f"{NODE}/gpu0"],
                  log_path=str(tmp_path / "j9.log"), checkpoint_dir=str(tmp_path / "ck"))
    ex.start(run)
    ex.close()
    again = executor(slurm, tmp_path)
    assert again.slurm_id("j9-long") == ex.slurm_id("j9-long")
    events: list[tuple[str, int | None]] = []

    def exited() -> bool:
        events.extend((e.kind, e.exit_code) for e in again.poll(time.time()))
        return ("exited", 7) in events
    wait_until(exited, 30, "the reattached run's exit", interval=0.2)
    assert events[0] == ("running", None)


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
    ex = SlurmExecutor(SlurmClient(), state_file=tmp_path / "s.json", gpu_types={"H100": "h100"},
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
