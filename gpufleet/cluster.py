"""`serve`'s link to the cluster managers users already run (Slurm, Kubernetes): remediation after each
risk scoring (drain / taint risky nodes within the configured limits, audited), the Slurm read-out
(pending GPU demand, job info series, power-saving advice), the Kubernetes pending-pod read-out, and the
integration routes of the API.

Outside demand (:meth:`ClusterLink.external_demand`): GPUs asked for by pending Slurm jobs (``squeue
--json``, gres / tres per job) and by Kubernetes pods waiting for a node (``nvidia.com/gpu`` /
``amd.com/gpu`` requests), per GPU type where the job or pod names one, without the jobs gpufleet itself
submitted there (its Slurm ``--comment gpufleet:...``, its pods' ``app.kubernetes.io/managed-by=gpufleet``):
those are in gpufleet's own queue already. The service records it beside its queue's demand every cycle
(``gpufleet_external_pending_gpus{source,gpu_type}``), so the demand forecast and the capacity plan see it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gpufleet.api.backend import FleetView
from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.errors import BackendUnavailable, GpufleetError
from gpufleet.exporter.schema import Snapshot
from gpufleet.exporter.sinks.prometheus import Family, build_families, render_text
from gpufleet.scheduler import PeriodicTask
from gpufleet.settings import ClusterSettings

if TYPE_CHECKING:
    from gpufleet.api.audit import AuditLog
    from gpufleet.jobs import QueueJobService

log = logging.getLogger("gpufleet.cluster")


class ClusterLink:
    """``view``: the fleet view (devices, risk); ``jobs``: the job service (the extender's queue state);
    ``latest``: the latest snapshot; ``audit``: the API's audit writer (None without the API);
    ``on_pending``: where the Slurm read-out reports pending GPU demand (the autoscaling advice's)."""

    def __init__(self, settings: ClusterSettings, *, view: FleetView, jobs: QueueJobService,
                 latest: Callable[[], Snapshot | None], audit: AuditLog | None = None,
                 on_pending: Callable[[float], None] | None = None, clock: Callable[[], float] = time.time,
                 kube_api: Any = None) -> None:
        from gpufleet.integrations.build import build_remediators

        self.settings = settings
        self.view = view
        self.jobs = jobs
        self.latest = latest
        self.clock = clock
        self.audit = audit
        self.on_pending = on_pending
        self.kube: Any = None
        if self.settings.kubernetes_enabled:  # one CoreV1Api for remediation and the pending-pod read-out
            from gpufleet.integrations.build import kube_core_v1

            self.kube = kube_api if kube_api is not None else kube_core_v1(self.settings)
        self.remediators = build_remediators(self.settings, audit=self._audit, node_of=self._node_of,
                                             kube_api=self.kube)
        self.external: dict[str, dict[str, float]] = {}
        """source (``slurm`` / ``kubernetes``) -> GPU type (``""``: not named) -> GPUs pending there."""
        self.advisor: Any = None
        self.slurm: Any = None
        self.slurm_pending: list[tuple[tuple[tuple[str, str], ...], float]] = []
        self.job_samples: list[Any] = []
        if self.settings.slurm_enabled:
            from gpufleet.integrations.build import slurm_client
            from gpufleet.integrations.power import PowerAdvisor

            self.slurm = slurm_client(self.settings)
            self.advisor = PowerAdvisor(step_s=self.settings.poll_interval)

    def _node_of(self) -> dict[str, str]:
        return {u: d.node for u, d in self.view.devices.items()}

    def _audit(self, action: Any) -> None:
        from gpufleet.integrations.remediation import audit_fields

        log.info("remediation %s", action.detail())
        if self.audit is not None:
            self.audit.append(**audit_fields(action))

    # -- after every risk scoring ----------------------------------------------------------------
    def remediate(self, now: float) -> None:
        for r in self.remediators:
            try:
                r.step(self.view.risk, now)
            except GpufleetError as exc:
                log.warning("remediation through %s failed: %s", r.manager.name, exc)

    # -- Slurm read-out --------------------------------------------------------------------------
    def poll(self, _wall: float) -> None:
        from gpufleet.integrations.slurm_mirror import (
            idle_gpus,
            is_demand,
            job_info_samples,
            pending_by_partition,
            pending_gpus,
        )

        if self.slurm is None:
            return
        try:
            nodes, jobs = self.slurm.nodes(), self.slurm.jobs()
        except BackendUnavailable as exc:
            log.warning("Slurm read failed: %s", exc)
            return
        snap = self.latest()
        ts = snap.ts if snap is not None else self.clock()
        by_index: dict[str, dict[int, str]] = {}
        for d in self.view.device_list():
            by_index.setdefault(d.node, {})[d.index] = d.uuid
        self.job_samples = job_info_samples(jobs, ts, uuid_by_index=by_index)
        self.slurm_pending = pending_by_partition(jobs)
        by_type: dict[str, float] = {}
        for j in jobs:
            if is_demand(j) and not j.from_gpufleet:
                by_type[j.gpu_type] = by_type.get(j.gpu_type, 0.0) + float(j.gpus * j.tasks)
        self.external["slurm"] = by_type
        if self.on_pending is not None:
            self.on_pending(sum(by_type.values()))
        if self.advisor is not None:
            self.advisor.observe(pending_gpus(jobs), idle_gpus(nodes), sum(1 for n in nodes if n.schedulable))

    # -- Kubernetes read-out ---------------------------------------------------------------------
    def poll_kubernetes(self, _wall: float) -> None:
        """GPUs asked for by pods waiting for a node (not gpufleet's own), by GPU type."""
        from gpufleet.integrations.k8s import pending_gpu_demand

        if self.kube is None:
            return
        try:
            self.external["kubernetes"] = pending_gpu_demand(self.kube, timeout=self.settings.kubernetes_timeout)
        except BackendUnavailable as exc:
            log.warning("Kubernetes read failed: %s", exc)

    def external_demand(self) -> list[tuple[str, str, float]]:
        """(source, GPU type, GPUs) pending outside gpufleet's queue, as of the last reads."""
        return [(src, kind, v) for src, by in sorted(self.external.items()) for kind, v in sorted(by.items())]

    def tasks(self) -> list[PeriodicTask]:
        out = [PeriodicTask("slurm_poll", self.settings.poll_interval, self.poll)] if self.slurm else []
        if self.kube is not None:
            out.append(PeriodicTask("kubernetes_pending", self.settings.poll_interval, self.poll_kubernetes))
        return out

    # -- exposition and routes -------------------------------------------------------------------
    def render(self) -> bytes:
        cat = catalogue()
        fams: list[Family] = []
        held = [row for r in self.remediators for row in r.held_values()]
        external = [((("source", src), ("gpu_type", kind)), v) for src, kind, v in self.external_demand()]
        for field_id, rows in (("node_remediation_active", held), ("slurm_pending_gpus", self.slurm_pending),
                               ("external_pending_gpus", external)):
            m = cat.field(field_id)
            f = Family(m.name, m.type, m.help)
            f.samples.extend(("", (), labels, float(v)) for labels, v in rows)
            fams.append(f)
        snap = self.latest()
        if snap is not None and self.job_samples:
            fams += build_families(Snapshot(ts=snap.ts, node=snap.node, devices=snap.devices,
                                            samples=list(self.job_samples)), "native", cat)
            fams = [f for f in fams if f.name != cat.field("up").name and f.name != cat.field("info").name]
        return render_text([f for f in fams if f.samples]).encode()

    def routers(self) -> list[tuple[Any, dict[tuple[str, str], frozenset[str]]]]:
        from gpufleet.integrations import remediation_api

        out: list[tuple[Any, dict[tuple[str, str], frozenset[str]]]] = [
            (remediation_api.remediation_router(lambda: self.remediators), remediation_api.PERMISSIONS)]
        if self.advisor is not None:
            from gpufleet.integrations import power

            out.append((power.power_router(self.advisor), power.PERMISSIONS))
        if self.settings.extender_enabled:
            from gpufleet.integrations import k8s_extender

            def state() -> Any:
                return k8s_extender.Extender(state=lambda: self.jobs.queue.state)

            out.append((k8s_extender.extender_router(state), k8s_extender.PERMISSIONS))
        return out
