"""The composite default's risk term: expected GPU-hours lost, and the gang guard."""

from __future__ import annotations

import numpy as np
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.policies.base import Request
from gpufleet.allocator.state import ClusterState

from .helpers import small_cluster

LONG = 48 * 3600.0


def three_nodes() -> ClusterState:
    """Node 0: every GPU low-risk; node 1: GPU 0 as low-risk as node 0, the rest risky; node 2: all risky."""
    state = small_cluster(nodes=3, gpus=8)
    risk = {f"GPU-{i}-{j}": 0.3 for i in (1, 2) for j in range(8)}
    risk.update({f"GPU-0-{j}": 0.01 for j in range(8)})
    risk["GPU-1-0"] = 0.01
    state.set_risk(risk)
    return state


def test_single_gpu_long_job_leaves_the_low_risk_node_to_the_gang() -> None:
    state = three_nodes()
    pol = make_policy("default")
    single = Request(0, 0, 1, duration_s=LONG)
    p = pol.place(state, single)
    # node 0 and node 1's GPU 0 cost the single job the same expected loss; breaking node 0 would push a
    # later 8-GPU gang onto a risky node, so the job takes the low-risk GPU on node 1
    assert p is not None and (p.node, p.gpus) == (1, (0,))
    state.gpu_free[1, 0] = 0
    state.refresh()
    gang = pol.place(state, Request(0, 0, 8, duration_s=LONG))
    assert gang is not None and gang.node == 0


def test_former_node_max_term_let_the_single_job_break_the_safe_node() -> None:
    # the property above is not automatic: the former term (max risk of the node's free GPUs) sends the
    # single job to node 0, and the gang then lands on a risky node
    state = three_nodes()
    pol = make_policy("default", risk_cost="node_max")
    p = pol.place(state, Request(0, 0, 1, duration_s=LONG))
    assert p is not None and p.node == 0
    state.gpu_free[0, p.gpus[0]] = 0
    state.refresh()
    gang = pol.place(state, Request(0, 0, 8, duration_s=LONG))
    assert gang is not None and gang.node in (1, 2)


def test_risk_cost_is_the_expected_gpu_hours_lost() -> None:
    state = small_cluster(nodes=2, gpus=8)
    state.set_risk({f"GPU-0-{j}": 0.1 for j in range(8)})
    pol = make_policy("default")
    nodes, slots = np.array([0, 1]), np.array([-1, -1])
    one = pol.risk_cost(state, Request(0, 0, 1, duration_s=24 * 3600.0), nodes, slots)
    eight = pol.risk_cost(state, Request(0, 0, 8, duration_s=24 * 3600.0), nodes, slots)
    # one GPU for 24 h at P(fail in 24 h) = 0.1: 24 GPU-h at stake x 0.1; eight: 192 x (1 - 0.9^8)
    assert abs(one[0] - 2.4) < 1e-9 and abs(eight[0] - 192 * (1 - 0.9 ** 8)) < 1e-9
    assert eight[1] == 0.0
    # a single job on node 1 (risk 0) breaks the node a gang would take and pushes it onto node 0: it pays the
    # gang's extra expected loss over its own 24 h, weighted by the gangs' share of the mix (0.1 by default)
    assert abs(one[1] - 0.1 * eight[0]) < 1e-9


def test_vectorised_gang_choice_matches_choose_gpus() -> None:
    """The risk term's vectorised GPU choice for gangs gives exactly the GPUs the placement takes."""
    from gpufleet.allocator.policies.base import choose_gpus, gang_gpu_mask
    from gpufleet.allocator.state import FULL, NodeSpec

    rng = np.random.default_rng(7)
    specs = []
    for i in range(60):
        gpus = int(rng.choice([2, 4, 8, 8]))
        per = int(rng.choice([1, 2, 4, 8]))
        specs.append(NodeSpec(f"n{i}", 64000, 256 * 1024, gpus, "H100", islands=[j // per + 3 for j in range(gpus)]))
    state = ClusterState.from_specs(specs)
    present = state.gpu_present
    state.gpu_free[:] = np.where(present, rng.choice([0, 500, FULL, FULL, FULL], size=present.shape), 0)
    state.gpu_health[:] = np.where(rng.random(present.shape) < 0.05, 1, state.gpu_health)
    state.node_health[rng.random(len(specs)) < 0.05] = 1
    nodes = np.arange(len(specs))
    for n in (2, 3, 4, 8):
        mask = gang_gpu_mask(state, nodes, n)
        for i in nodes:
            expected = choose_gpus(state, int(i), Request(0, 0, n))
            assert tuple(int(x) for x in np.flatnonzero(mask[i])) == expected, (n, i)
