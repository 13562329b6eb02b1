"""Slurm's view as gpufleet data: per-GPU job ``_info`` samples, pending GPU demand, the allocator's state.

* :func:`job_info_samples`: one ``slurm_job_info{job_id,user,partition}`` sample (value 1) per GPU a running
  job holds on a node; the series disappears when the job leaves the queue (unbounded values stay in an
  ``_info`` series, never on the GPU's metrics).
* :func:`pending_gpus` / :func:`pending_by_partition`: GPUs asked for by pending jobs now (the demand
  forecaster's and the autoscaling advice's "pending" input; held jobs are left out).
* :func:`cluster_state`: an :class:`~allocator.state.ClusterState` mirroring Slurm: nodes and their GPUs,
  the GPUs running jobs hold (by Slurm's GRES index), drained nodes DRAINING, down nodes CORDONED.

Slurm's GPU index is the position of the device file in ``gres.conf`` (with ``AutoDetect=nvml`` the
device minor number order); ``uuid_by_index`` maps it to the GPU's uuid where the caller knows the map
(from the exporter's devices on that node: ``{d.index: d.uuid}``, right when ``CUDA_DEVICE_ORDER`` /
minor numbers follow NVML's order, which they do on standard NVIDIA installs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from gpufleet.allocator.state import FULL, ClusterState, Health, NodeSpec, Placement
from gpufleet.exporter.schema import Sample
from gpufleet.integrations.slurm import SlurmJob, SlurmNode

# pending reasons that mean "waiting for a person, not for GPUs": not demand
_NOT_DEMAND = ("JobHeldUser", "JobHeldAdmin", "Dependency", "DependencyNeverSatisfied", "BadConstraints",
               "PartitionDown", "PartitionInactive", "InvalidAccount", "InvalidQOS", "BeginTime")


def default_uuid(node: str, index: int) -> str:
    """The uuid used when the caller gives no map: ``<node>/gpu<index>`` (as :class:`NodeSpec` does)."""
    return f"{node}/gpu{index}"


def job_info_samples(jobs: Iterable[SlurmJob], ts: float, *, node: str | None = None,
                     uuid_by_index: Mapping[str, Mapping[int, str]] | None = None) -> list[Sample]:
    """``slurm_job_info`` samples for the GPUs running jobs hold (on ``node`` only when given).

    ``uuid_by_index[node][index]`` gives the uuid; GPUs missing from the map use :func:`default_uuid`.
    """
    out: list[Sample] = []
    for job in jobs:
        if not job.running:
            continue
        for host, idx in job.gpu_indices.items():
            if node is not None and host != node:
                continue
            umap = (uuid_by_index or {}).get(host, {})
            labels = (("job_id", job.job_id), ("user", job.user), ("partition", job.partition))
            out.extend(Sample(umap.get(i, default_uuid(host, i)), "slurm_job_info", 1.0, ts, labels) for i in idx)
    return out


def is_demand(job: SlurmJob) -> bool:
    return job.pending and job.gpus > 0 and job.reason not in _NOT_DEMAND


def pending_gpus(jobs: Iterable[SlurmJob], *, partition: str | None = None) -> float:
    """GPUs requested by jobs waiting to run now (held / never-satisfiable jobs are not demand; a pending
    job array counts every task it still has)."""
    return float(sum(j.gpus * j.tasks for j in jobs
                     if is_demand(j) and (partition is None or j.partition == partition)))


def pending_by_partition(jobs: Iterable[SlurmJob]) -> list[tuple[tuple[tuple[str, str], ...], float]]:
    """``(labels, value)`` pairs for the ``slurm_pending_gpus{partition}`` family."""
    by: dict[str, float] = {}
    for j in jobs:
        if is_demand(j):
            by[j.partition] = by.get(j.partition, 0.0) + j.gpus * j.tasks
    return [((("partition", p),), v) for p, v in sorted(by.items())]


def idle_gpus(nodes: Iterable[SlurmNode]) -> float:
    """GPUs free on nodes that accept work (the autoscaling advice's "idle" input)."""
    return float(sum(max(0, n.gpus - n.gpus_used) for n in nodes if n.schedulable))


def cluster_state(nodes: Sequence[SlurmNode], jobs: Iterable[SlurmJob], *,
                  uuid_by_index: Mapping[str, Mapping[int, str]] | None = None,
                  islands: Mapping[str, Sequence[int]] | None = None) -> ClusterState:
    """A :class:`ClusterState` with Slurm's nodes, its placed GPUs held and its drained nodes out.

    CPU and memory capacity are Slurm's; CPU use is not mirrored (Slurm does its own CPU accounting; the
    state here is for GPU placement, scoring and fragmentation).
    """
    specs = []
    for n in nodes:
        umap = (uuid_by_index or {}).get(n.name, {})
        specs.append(NodeSpec(n.name, n.cpus * 1000, n.memory_mib, n.gpus, n.gpu_type,
                              islands=(islands or {}).get(n.name),
                              uuids=[umap.get(i, default_uuid(n.name, i)) for i in range(n.gpus)]))
    state = ClusterState.from_specs(specs)
    for i, n in enumerate(nodes):
        if n.drained:
            state.set_node_health(i, Health.DRAINING)
        elif not n.schedulable:
            state.set_node_health(i, Health.CORDONED)
    for job in jobs:
        if not job.running:
            continue
        for host, idx in job.gpu_indices.items():
            try:
                i = state.node_index(host)
            except Exception:  # a job on a node sinfo did not list (another partition view): skip
                continue
            slots = tuple(j for j in idx if j < int(state.gpu_count[i]) and state.gpu_free[i, j] >= FULL)
            if slots:
                state.allocate(Placement(node=i, gpus=slots, milli=FULL), 0, 0)
    return state


def held_gpus(state: ClusterState) -> dict[str, list[int]]:
    """Per node, the GPU slots that are in use in a state (what a test or the API shows)."""
    out: dict[str, list[int]] = {}
    for i, name in enumerate(state.names):
        used = [j for j in range(int(state.gpu_count[i])) if state.gpu_free[i, j] < FULL]
        if used:
            out[name] = used
    return out


def pending_reason(job: SlurmJob, nodes: Iterable[SlurmNode]) -> str:
    """Why a job waits, in Slurm's words plus the drain reasons of the unavailable nodes it could use
    (so a wait caused by gpufleet's drain names gpufleet, the risk and the horizon)."""
    text = job.description or job.reason
    notes = [f"{n.name}: {n.reason}" for n in nodes
             if n.drained and n.reason and (not job.partition or job.partition in n.partitions)]
    return f"{text} ({'; '.join(notes)})" if notes and job.pending else text
