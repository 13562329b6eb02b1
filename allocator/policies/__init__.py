"""Placement policies, one per file, one interface (:class:`allocator.policies.base.Policy`).

``make_policy(name, seed=..., mix=...)`` builds one by name; ``mix`` (the observed requests) feeds the
policies that learn the workload's request mix (fgd and the composite default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gpufleet.allocator.policies.base import Policy, Request
from gpufleet.exporter.errors import ConfigError


def _registry() -> dict[str, Callable[..., Any]]:
    from gpufleet.allocator.policies.best_fit import BestFit
    from gpufleet.allocator.policies.composite import Composite
    from gpufleet.allocator.policies.fgd import FGD
    from gpufleet.allocator.policies.first_fit import FirstFit
    from gpufleet.allocator.policies.load_aware import LoadAware
    from gpufleet.allocator.policies.random_fit import RandomFit
    from gpufleet.allocator.policies.risk_aware import RiskAware
    from gpufleet.allocator.policies.topology import TopologyAware

    return {c.name: c for c in (FirstFit, BestFit, RandomFit, FGD, LoadAware, TopologyAware, RiskAware, Composite)}


POLICY_NAMES = ("first_fit", "best_fit", "random", "fgd", "load_aware", "topology", "risk_aware", "default")


def make_policy(name: str, *, seed: int = 0, mix: Iterable[Request] | None = None, **kwargs: Any) -> Policy:
    """A policy by name; ``mix`` is the request mix for the policies that use one."""
    reg = _registry()
    if name not in reg:
        raise ConfigError(f"unknown policy {name!r}; choose one of {', '.join(sorted(reg))}")
    policy = reg[name](seed=seed, **kwargs)
    if mix is not None and hasattr(policy, "observe"):
        policy.observe(mix)
    return policy  # type: ignore[no-any-return]


__all__ = ["POLICY_NAMES", "Policy", "Request", "make_policy"]
