"""`gpufleet demo`'s live part: real checkpointing jobs, a GPU fault under one of them, the resume.

After the accelerated two weeks, the demo builds the job service the way `serve` does
(:func:`gpufleet.wiring.build_job_service`, the queue in the demo's database) with the **local executor**
on a small twin (2 nodes x 2 GPUs) and real wall-clock time. It submits a few training jobs: each is the
recovery example (:mod:`gpufleet.train_example`, a small torch loop with a fixed seed that checkpoints
every few steps). Once the first job has written checkpoints, the twin's GPU under it falls off the bus
(XID 79). The service reads the twin's next snapshot, marks the GPU lost, stops the job (SIGTERM: it
writes a last checkpoint in the grace period) and places it on another GPU, where it resumes from that
checkpoint. The summary gives the steps it kept, the steps it lost (at most one checkpoint interval),
and whether its final weights equal those of an uninterrupted job with the same seed, bit for bit.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.exporter.errors import GpufleetError


class LiveDemoError(GpufleetError):
    """The live part did not finish in its time (the message says which job was where)."""


@dataclass
class LiveConfig:
    out: Path                 # the demo's data folder; the live part uses <out>/live
    steps: int = 60
    checkpoint_every: int = 10
    step_sleep: float = 0.05  # seconds per step, so the fault lands mid-run
    jobs: int = 3
    timeout_s: float = 60.0
    seed: int = 7


def _cmd(cfg: LiveConfig) -> list[str]:
    return [sys.executable, "-m", "gpufleet.train_example", "--steps", str(cfg.steps), "--checkpoint-every",
            str(cfg.checkpoint_every), "--step-sleep", str(cfg.step_sleep)]


def run_live(cfg: LiveConfig, progress: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """Run the live part; returns what the summary shows (see the module docstring). Raises
    :class:`LiveDemoError` when a job does not get where it should within ``cfg.timeout_s``."""
    from gpufleet.settings import load_settings
    from gpufleet.simulator.twin import Twin, TwinConfig
    from gpufleet.wiring import build_job_service

    say = progress or (lambda stage, frac: None)
    began = time.monotonic()
    folder = cfg.out / "live"
    if folder.exists():  # the live part's own scratch folder (jobs, logs, checkpoints) starts empty each run
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    settings = load_settings(None, {"data_dir": str(folder), "executor": {"kind": "local"},
                                    "jobs": {"grace_s": 20.0}})
    twin = Twin(TwinConfig(nodes=2, gpus_per_node=2, seed=cfg.seed, failures=False, warmup_s=0))
    twin.advance(time.time() - 60)
    svc = build_job_service(settings, twin.devices(), folder, time.time)
    deadline = began + cfg.timeout_s

    def wait(check: Callable[[], bool], what: str) -> None:
        while not check():
            if time.monotonic() > deadline:
                where = {j["name"]: (j["state"], j["placement"], j["reason"]) for j in svc.list()}
                raise LiveDemoError(f"the live demo timed out after {cfg.timeout_s:g} s waiting for {what}; "
                                    f"jobs: {where}")
            svc.tick(time.time())
            say("live: real jobs on the local executor", min(0.99, (time.monotonic() - began) / cfg.timeout_s))
            time.sleep(0.05)

    try:
        jobs = svc.submit([{"name": f"train-{i}", "gpus": 1, "task_type": "training", "command": _cmd(cfg)}
                           for i in range(cfg.jobs)], "demo", "demo")
        victim = jobs[0]["id"]
        first_gpu = svc.get(victim)["placement"][0]
        wait(lambda: f"checkpoint at step {2 * cfg.checkpoint_every}" in svc.logs(victim)[0],
             f"{victim} to write two checkpoints")
        at = time.time()
        twin.inject_fault(first_gpu, "fall_off_bus", at=at + 1)  # XID 79: the GPU leaves the bus
        twin.advance(at + 60)
        node = next(i for i, ds in enumerate(twin.devices_by_node) if any(d.uuid == first_gpu for d in ds))
        fault_at = time.monotonic()
        svc.observe(twin.snapshot(node), time.time())
        ids = [j["id"] for j in jobs]
        wait(lambda: svc.get(victim)["state"] == "running" and bool(svc.get(victim)["placement"]),
             f"{victim} to start again on another GPU")
        resumed_on = svc.get(victim)["placement"]
        wait(lambda: all(svc.get(i)["state"] in ("succeeded", "failed") for i in ids), "every job to finish")
        resumed_in = time.monotonic() - fault_at
        final = {i: svc.get(i) for i in ids}
        logs = {i: svc.logs(i)[0] for i in ids}
    finally:
        svc.close()
    log = logs[victim]
    stopped = re.search(r"stopped by SIGTERM at step (\d+)", log)
    resumed = re.search(r"resumed from step (\d+)", log)
    digests = {i: (re.findall(r"weights sha256 (\w+)", text) or [None])[-1] for i, text in logs.items()}
    others = [digests[i] for i in ids if i != victim and final[i]["state"] == "succeeded"]
    stopped_at = int(stopped.group(1)) if stopped else None
    resumed_from = int(resumed.group(1)) if resumed else None
    return {
        "jobs": len(ids), "succeeded": sum(1 for j in final.values() if j["state"] == "succeeded"),
        "job": victim, "faulted_gpu": first_gpu, "resumed_on": resumed_on,
        "restarts": final[victim]["restarts"], "steps": cfg.steps, "checkpoint_every": cfg.checkpoint_every,
        "stopped_at_step": stopped_at, "resumed_from_step": resumed_from,
        "steps_lost": (stopped_at - resumed_from) if stopped_at is not None and resumed_from is not None else None,
        "steps_saved": resumed_from,
        "weights_identical": bool(others) and digests[victim] is not None and all(d == digests[victim] for d in others),
        "resumed_in_s": round(resumed_in, 1), "seconds": round(time.monotonic() - began, 1),
        "log": str(svc.log_dir / f"{victim}.log"),
    }
