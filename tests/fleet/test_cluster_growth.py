"""The allocator's cluster grows in place (#15): nodes and GPUs added while jobs run keep every existing
index, allocation and override, and the default policy places on the new node at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gpufleet.allocator.jobs import JobSpec, Limits
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import PENDING, RUNNING, JobQueue
from gpufleet.allocator.state import FULL, ClusterState, Health, NodeSpec
from gpufleet.analytics.fleet.model import FleetView, NodeView
from gpufleet.exporter.errors import InputError
from gpufleet.exporter.schema import Device


def _cluster() -> ClusterState:
    return ClusterState.from_specs([NodeSpec("a", 8000, 65536, 2, "A100", uuids=["a0", "a1"]),
                                    NodeSpec("b", 8000, 65536, 2, "A100", uuids=["b0", "b1"])])


def test_add_nodes_keeps_what_is_there_and_places_on_the_new_node() -> None:
    st = _cluster()
    q = JobQueue(st, make_policy("default"))
    q.submit([JobSpec(f"j{k}", gpus=2, cpu_milli=1000) for k in range(2)], now=0)
    assert sorted(q.schedule(0)) == ["j0", "j1"]
    held = {n: [(p.node, p.gpus) for p in q.jobs[n].placements] for n in ("j0", "j1")}
    st.set_gpu_override("a1", Health.CORDONED, reason="test")
    q.submit([JobSpec("big", gpus=4, gpu_types=("H100",), cpu_milli=1000)], now=1)
    assert q.jobs.get("big") is None  # no H100 node, no 4-GPU node: refused at submission

    assert st.add_nodes([NodeSpec("c", 16000, 131072, 4, "H100", uuids=["c0", "c1", "c2", "c3"]),
                         NodeSpec("a", 8000, 65536, 2, "A100", uuids=["a0", "a1"])]) == ["c"]
    assert st.names == ["a", "b", "c"] and st.gpu_free.shape == (3, 4)
    assert st.locate("c2") == (2, 2) and st.locate("b1") == (1, 1)
    assert st.gpu_health[st.locate("a1")] == Health.CORDONED  # overrides hold
    assert int(st.cpu_free[2]) == 16000 and int(st.cpu_free[0]) == 7000  # allocations hold
    assert not st.gpu_present[0, 2:].any() and int(st.n_full[2]) == 4
    assert st.models[st.model_id[2]] == "H100"
    q.limits = Limits.of(st)
    q.submit([JobSpec("big", gpus=4, gpu_types=("H100",), cpu_milli=1000)], now=2)
    assert q.schedule(2) == ["big"]
    assert [(p.node, p.gpus) for p in q.jobs["big"].placements] == [(2, (0, 1, 2, 3))]
    assert {n: [(p.node, p.gpus) for p in q.jobs[n].placements] for n in ("j0", "j1")} == held
    assert q.jobs["j0"].status == RUNNING
    q.complete("big", 3)
    assert (st.gpu_free[2, :4] == FULL).all()


def test_add_gpus_to_a_node_already_there() -> None:
    st = ClusterState.from_specs([NodeSpec("a", 8000, 65536, 1, "A100", uuids=["a0"]),
                                  NodeSpec("b", 8000, 65536, 2, "A100", uuids=["b0", "b1"])])
    q = JobQueue(st, make_policy("default"))
    q.submit([JobSpec("j", gpus=2)], now=0)
    assert q.schedule(0) == ["j"] and q.jobs["j"].placements[0].node == 1
    q.submit([JobSpec("k", gpus=2)], now=0)
    assert q.schedule(0) == [] and q.jobs["k"].status == PENDING
    assert st.add_nodes([NodeSpec("a", 8000, 65536, 2, "A100", uuids=["a0", "a1"])]) == ["a"]
    assert st.locate("a1") == (0, 1) and int(st.gpu_count[0]) == 2
    assert q.schedule(1) == ["k"] and q.jobs["k"].placements[0].node == 0
    # more GPUs than the slot rows hold, and no new node: refused, nothing changed
    before = st.gpu_free.copy()
    with pytest.raises(InputError, match="GPU slots"):
        st.add_nodes([NodeSpec("a", 8000, 65536, 3, "A100", uuids=["a0", "a1", "a2"])])
    assert np.array_equal(st.gpu_free, before) and not st.knows("a2")


def test_set_capacity_keeps_allocations() -> None:
    st = _cluster()
    q = JobQueue(st, make_policy("default"))
    q.submit([JobSpec("j", gpus=1, cpu_milli=3000, memory_mib=1000)], now=0)
    q.schedule(0)
    i = q.jobs["j"].placements[0].node
    st.set_capacity(i, 32000, 4096)
    assert int(st.cpu_free[i]) == 29000 and int(st.mem_free[i]) == 3096


def _view(ts: float, nodes: dict[str, tuple[str, int, float | None]]) -> FleetView:
    """A fleet view: node -> (GPU model, GPUs, CPUs or None when the fleet does not report them)."""
    v = FleetView(ts=ts)
    for name, (model, n, cpus) in nodes.items():
        nv = v.nodes[name] = NodeView(name, cpus=cpus, memory_bytes=64 * 2**30 if cpus else None)
        for j in range(n):
            d = Device(uuid=f"{name}-{j}", index=j, node=name, model=model, memory_total_bytes=80 * 2**30)
            v.devices[d.uuid], v.health[d.uuid], v.names[d.uuid] = d, "ok", "native"
            nv.gpus.append(d.uuid)
    return v


def test_fleet_growth_keeps_the_layout_in_the_database(tmp_path: Path) -> None:
    from gpufleet.growth import FleetGrowth
    from gpufleet.jobs import QueueJobService, open_queue
    from gpufleet.state import close_state, open_state

    url = f"sqlite:///{tmp_path / 'state.db'}"
    growth = FleetGrowth(open_state(url))
    st = growth.cluster(_view(0, {"b": ("A100", 2, 8), "a": ("A100", 2, 8)}))
    assert st.names == ["a", "b"]
    jobs = QueueJobService(open_queue(url, st, make_policy("default")))
    growth.attach(jobs)
    # c joins before it reports its CPUs: added with none, given them when the fleet reports them
    assert growth.observe(_view(1, {"a": ("A100", 2, 8), "b": ("A100", 2, 8), "c": ("H100", 4, None)})) == ["c"]
    assert st.names == ["a", "b", "c"] and int(st.cpu_cap[2]) == 0
    assert jobs.queue.limits.max_per_node_by_type["H100"] == 4
    assert growth.observe(_view(2, {"a": ("A100", 2, 8), "b": ("A100", 2, 8), "c": ("H100", 4, 16)})) == []
    assert int(st.cpu_cap[2]) == 16000
    jobs.queue.submit([JobSpec("h", gpus=4, gpu_types=("H100",))], now=3)
    jobs.queue.schedule(3)
    assert jobs.queue.jobs["h"].placements[0].node == 2
    from sqlalchemy import select

    from gpufleet.state.models import AllocationRow

    with open_state(url).db.engine.connect() as conn:  # the allocation rows name the new node's GPUs
        rows = {(r.uuid, r.node) for r in conn.execute(select(AllocationRow).where(AllocationRow.job == "h"))}
    assert rows == {(f"c-{j}", "c") for j in range(4)}
    jobs.close()
    close_state(url)

    # restart with b silent (not in the first read): the stored order, b kept and not schedulable
    growth = FleetGrowth(open_state(url))
    st = growth.cluster(_view(4, {"a": ("A100", 2, 8), "c": ("H100", 4, 16)}))
    assert st.names == ["a", "b", "c"] and st.uuids[2] == ["c-0", "c-1", "c-2", "c-3"]
    assert int(st.cpu_cap[1]) == 8000  # the stored capacity
    assert {d.uuid for d in growth.missing} == {"b-0", "b-1"} and int(st.n_full[1]) == 0
    queue = open_queue(url, st, make_policy("default"))
    assert [(p.node, p.gpus) for p in queue.jobs["h"].placements] == [(2, (0, 1, 2, 3))]
    assert int(st.n_full[2]) == 0  # still held by h
    close_state(url)
