"""The analytics `gpufleet serve` schedules: failure-risk scoring, demand forecasting, retraining."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpufleet.service import PeriodicTask, Service


def analytics_tasks(service: Service) -> list[PeriodicTask]:
    from gpufleet.service import PeriodicTask

    def persist(now: float) -> None:
        service.jobs.persist()
        service.engine.save_state()

    return [PeriodicTask("persist", 60.0, persist)]
