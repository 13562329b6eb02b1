"""Shared pieces of the executor tests: a twin fleet, a job service over it, a wait loop."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import JobQueue
from gpufleet.allocator.state import ClusterState
from gpufleet.simulator.twin import Twin, TwinConfig

from gpufleet.executors.base import Executor
from gpufleet.jobs import QueueJobService, open_queue
from gpufleet.settings import JobsSettings
from gpufleet.state import close_state
from gpufleet.wiring import cluster_from_devices

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "jobs" / "train_checkpointing.py"


def twin(nodes: int = 2, gpus: int = 2) -> Twin:
    tw = Twin(TwinConfig(nodes=nodes, gpus_per_node=gpus, seed=3, failures=False, warmup_s=0))
    tw.advance(1_700_000_000.0)
    return tw


def service(tw: Twin, executor: Executor, tmp: Path, grace_s: float = 10.0) -> QueueJobService:
    queue = JobQueue(cluster_from_devices(tw.devices()), make_policy("default"))
    return QueueJobService(queue, clock=time.time, executor=executor,
                           settings=JobsSettings(grace_s=grace_s), data_dir=tmp)


def db_service(state: ClusterState, executor: Executor, tmp: Path, grace_s: float = 10.0) -> QueueJobService:
    """A job service whose queue (and run table) lives in a SQLite database under ``tmp``: building a second
    one over the same folder is a restarted ``serve``."""
    url = f"sqlite:///{tmp / 'state.db'}"
    close_state(url)  # a new process: a new engine, everything read back from the database
    queue = open_queue(url, state, make_policy("default"))
    return QueueJobService(queue, clock=time.time, executor=executor, settings=JobsSettings(grace_s=grace_s),
                           data_dir=tmp)


def run_until(svc: QueueJobService, check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        svc.tick(time.time())
        if check():
            return
        time.sleep(0.05)
    states = {j["id"]: (j["state"], j["reason"]) for j in svc.list()}
    raise AssertionError(f"timed out waiting for {what}; jobs: {states}")


def train_cmd(steps: int, every: int, sleep: float = 0.0) -> list[str]:
    return [sys.executable, str(EXAMPLE), "--steps", str(steps), "--checkpoint-every", str(every),
            "--step-sleep", str(sleep)]
