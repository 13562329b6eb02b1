"""The simulated executor: the twin's clock. A run "exits" with 0 once its ``duration_s`` has passed."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpufleet.executors.base import ExecEvent, Executor, RunSpec


@dataclass
class _SimRun:
    run: RunSpec
    seq: int
    started: float | None = None
    stopped: bool = False


class SimulatedExecutor(Executor):
    """Runs end by a heap of end times, so a poll costs the runs that start, stop or end, not every run
    (a 10,000-GPU twin holds 10,000 runs). Events come in start order within one poll."""

    name = "simulated"

    def __init__(self) -> None:
        self.runs: dict[str, _SimRun] = {}
        self._fresh: list[str] = []                    # started, not yet reported running
        self._stops: list[str] = []                    # stopped, exit not yet reported
        self._ends: list[tuple[float, int, str]] = []  # (end time, seq, job) heap
        self._seq = 0

    def start(self, run: RunSpec) -> None:
        self._seq += 1
        self.runs[run.job_id] = _SimRun(run, self._seq)
        self._fresh.append(run.job_id)

    def poll(self, now: float) -> list[ExecEvent]:
        due: list[tuple[int, list[ExecEvent]]] = []
        stops, self._stops = self._stops, []
        for jid in stops:
            r = self.runs.pop(jid, None)
            if r is not None:
                due.append((r.seq, [ExecEvent(jid, r.run.attempt, "exited", -15, "stopped")]))
        fresh, self._fresh = self._fresh, []
        for jid in fresh:
            r = self.runs.get(jid)
            if r is None or r.started is not None:
                continue
            r.started = now
            heapq.heappush(self._ends, (now + r.run.duration_s - 1e-9, r.seq, jid))
            due.append((r.seq, [ExecEvent(jid, r.run.attempt, "running", node=r.run.node)]))
        while self._ends and self._ends[0][0] <= now:
            _end, seq, jid = heapq.heappop(self._ends)
            r = self.runs.get(jid)
            if r is None or r.seq != seq or r.stopped:
                continue  # stopped or replaced since
            del self.runs[jid]
            due.append((seq, [ExecEvent(jid, r.run.attempt, "exited", 0)]))
        due.sort(key=lambda d: d[0])  # stable: a run that starts and ends in one poll reports running first
        return [ev for _, evs in due for ev in evs]

    def stop(self, job_id: str, grace_s: float, reason: str) -> None:
        r = self.runs.get(job_id)
        if r is not None and not r.stopped:
            r.stopped = True
            self._stops.append(job_id)

    def active(self, job_id: str) -> bool:
        return job_id in self.runs

    def handle(self, job_id: str) -> dict[str, Any] | None:
        return {"simulated": True} if job_id in self.runs else None

    def reattach(self, run: RunSpec, handle: Mapping[str, Any]) -> str | None:
        """A simulated run after a restart runs its remaining ``duration_s`` again on the new clock."""
        if run.job_id not in self.runs:
            self.start(run)
        return None
