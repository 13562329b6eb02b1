"""The simulated executor: the twin's clock. A run "exits" with 0 once its ``duration_s`` has passed."""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.executors.base import ExecEvent, Executor, RunSpec


@dataclass
class _SimRun:
    run: RunSpec
    started: float | None
    reported: bool = False
    stopped: bool = False


class SimulatedExecutor(Executor):
    name = "simulated"

    def __init__(self) -> None:
        self.runs: dict[str, _SimRun] = {}

    def start(self, run: RunSpec) -> None:
        self.runs[run.job_id] = _SimRun(run, None)

    def poll(self, now: float) -> list[ExecEvent]:
        out = []
        for jid, r in list(self.runs.items()):
            if r.stopped:
                out.append(ExecEvent(jid, r.run.attempt, "exited", -15, "stopped"))
                del self.runs[jid]
                continue
            if r.started is None:
                r.started = now
            if not r.reported:
                r.reported = True
                out.append(ExecEvent(jid, r.run.attempt, "running", node=r.run.node))
            if now >= r.started + r.run.duration_s - 1e-9:
                out.append(ExecEvent(jid, r.run.attempt, "exited", 0))
                del self.runs[jid]
        return out

    def stop(self, job_id: str, grace_s: float, reason: str) -> None:
        if job_id in self.runs:
            self.runs[job_id].stopped = True

    def active(self, job_id: str) -> bool:
        return job_id in self.runs
