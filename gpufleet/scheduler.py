"""The service's scheduler: periodic tasks on one thread, long ones (retraining) on a worker of their own.

``run_due(now)`` runs every short task that is due in turn on the calling thread (the scheduler's own
thread in `serve`, the demo's simulated clock in `gpufleet demo`) and hands every long task that is due
to a background thread, so an hour-long retrain never delays the 5-minute risk scoring. A long task
that is still running when it falls due again is not started twice; it runs again once it has finished
and is due. Failures are logged and counted on the task, never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("gpufleet.scheduler")


@dataclass
class PeriodicTask:
    """A job the scheduler runs every ``interval`` seconds; ``long`` ones run off the scheduling thread."""

    name: str
    interval: float
    run: Callable[[float], Any]
    long: bool = False
    last_run: float = 0.0
    last_ok: float | None = None
    runs: int = 0
    failures: int = 0
    last_error: str | None = None

    def due(self, now: float) -> bool:
        return now - self.last_run >= self.interval


@dataclass
class Scheduler:
    tasks: list[PeriodicTask] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _long: dict[str, threading.Thread] = field(default_factory=dict)

    def add(self, *tasks: PeriodicTask | Iterable[PeriodicTask]) -> None:
        for t in tasks:
            self.tasks.extend([t] if isinstance(t, PeriodicTask) else t)

    def task(self, name: str) -> PeriodicTask:
        return next(t for t in self.tasks if t.name == name)

    def running(self, name: str) -> bool:
        """Whether the long task ``name`` is running in the background now."""
        th = self._long.get(name)
        return th is not None and th.is_alive()

    def run_due(self, now: float) -> None:
        for task in self.tasks:
            if not task.due(now):
                continue
            if task.long:
                if self.running(task.name):
                    continue  # still busy from its last turn: not started twice
                task.last_run = now
                th = threading.Thread(target=self._run, args=(task, now), name=f"gpufleet-{task.name}", daemon=True)
                self._long[task.name] = th
                th.start()
            else:
                task.last_run = now
                self._run(task, now)

    @staticmethod
    def _run(task: PeriodicTask, now: float) -> None:
        task.runs += 1
        try:
            task.run(now)
            task.last_ok = now
            task.last_error = None
        except Exception as exc:  # a failing analytics job must not stop the service
            task.failures += 1
            task.last_error = str(exc)
            log.exception("scheduled task %s failed", task.name)

    def wait_long(self, timeout: float | None = None) -> bool:
        """Wait for the long tasks now running (the demo's simulated clock waits; `serve` does not).
        True when none is left running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for th in list(self._long.values()):
            th.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(th.is_alive() for th in self._long.values())

    def start(self, clock: Callable[[], float], tick: float = 1.0) -> None:
        def loop() -> None:
            while not self._stop.wait(tick):
                self.run_due(clock())
        self._thread = threading.Thread(target=loop, name="gpufleet-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if not self.wait_long(timeout):
            log.warning("long task(s) %s still running at shutdown",
                        ", ".join(n for n in self._long if self.running(n)))
