"""Cluster-manager integrations: Slurm and Kubernetes read, remediation and scheduling advice.

* :mod:`gpufleet.integrations.slurm`: read nodes / jobs (``sinfo`` / ``squeue --json``), drain / resume, submit.
* :mod:`gpufleet.integrations.slurm_mirror`: Slurm's view as gpufleet data (``_info`` samples, pending GPUs,
  the allocator's :class:`~allocator.state.ClusterState`).
* :mod:`gpufleet.integrations.remediation`: the risk-driven :class:`Remediator` both managers share.
* :mod:`gpufleet.integrations.k8s`: Kubernetes node taint / cordon / risk-band label (official client).
* :mod:`gpufleet.integrations.k8s_extender`: kube-scheduler extender (filter / prioritize) router.
* :mod:`gpufleet.integrations.power`: Slurm power-saving advice (ResumeProgram / SuspendProgram).
"""
