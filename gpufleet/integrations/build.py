"""Build the cluster-manager pieces from the ``[cluster]`` settings section (what ``serve`` and the CLI call)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gpufleet.exporter.errors import ConfigError
from gpufleet.integrations.remediation import Action, RemediationPolicy, Remediator

if TYPE_CHECKING:
    from gpufleet.integrations.slurm import SlurmClient
    from gpufleet.settings import ClusterSettings


def remediation_policy(c: ClusterSettings, *, dry_run: bool | None = None) -> RemediationPolicy:
    return RemediationPolicy(threshold=c.remediation_threshold, resume_below=c.remediation_resume_below,
                             horizon=c.remediation_horizon, max_share=c.remediation_max_share,
                             dry_run=c.remediation_dry_run if dry_run is None else dry_run,
                             operator_override_s=c.operator_override_s)


def slurm_client(c: ClusterSettings) -> SlurmClient:
    from gpufleet.integrations.slurm import SlurmClient

    return SlurmClient(conf=str(c.slurm_conf) if c.slurm_conf else None,
                       bin_dir=str(c.slurm_bin_dir) if c.slurm_bin_dir else None, timeout=c.slurm_timeout)


def kube_core_v1(c: ClusterSettings) -> Any:
    """A ``CoreV1Api`` from the kubeconfig file, or the in-cluster service account when none is set."""
    from kubernetes import client, config

    try:
        if c.kubernetes_kubeconfig:
            api_client = config.new_client_from_config(config_file=str(c.kubernetes_kubeconfig))
            return client.CoreV1Api(api_client)
        config.load_incluster_config()
    except (config.ConfigException, OSError) as exc:
        raise ConfigError(f"cluster.kubernetes: cannot load Kubernetes credentials: {exc}") from None
    return client.CoreV1Api()


def build_remediators(c: ClusterSettings, *, audit: Callable[[Action], None] | None = None,
                      node_of: Callable[[], Mapping[str, str]] | None = None,
                      dry_run: bool | None = None, kube_api: Any = None) -> list[Remediator]:
    """One :class:`Remediator` per enabled manager (Slurm, Kubernetes), sharing one policy."""
    policy = remediation_policy(c, dry_run=dry_run)
    out: list[Remediator] = []
    if c.slurm_enabled:
        from gpufleet.integrations.slurm import SlurmNodeManager

        out.append(Remediator(SlurmNodeManager(slurm_client(c)), policy, audit=audit, node_of=node_of))
    if c.kubernetes_enabled:
        from gpufleet.integrations.k8s import KubeNodeManager

        api = kube_api if kube_api is not None else kube_core_v1(c)
        mgr = KubeNodeManager(api, mode=c.kubernetes_mode, label_selector=c.kubernetes_label_selector or None,
                              timeout=c.kubernetes_timeout)
        out.append(Remediator(mgr, policy, audit=audit, node_of=node_of))
    return out
