"""Workload: placement interface, first fit, openb replay, GenAI utilization replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gpufleet.exporter.errors import InputError
from gpufleet.simulator.workload import Cluster, FirstFitPlacer, GenaiReplay, Job, OpenbReplay, PlacementState

from tests.servers import require_data


def _state(free: list[float], per_node: int = 4) -> PlacementState:
    n = len(free)
    slices = [slice(i, min(i + per_node, n)) for i in range(0, n, per_node)]
    node_of = np.repeat(np.arange(len(slices)), per_node)[:n]
    return PlacementState(np.array(free), np.ones(n, dtype=bool), node_of, slices)


def _job(n: int, share: float = 1.0) -> Job:
    return Job("j", n, share, 0.0, 60.0, 1.0, 0.5, 0.5, 0.0)


def test_first_fit_keeps_multi_gpu_jobs_on_one_node_and_packs_fractions() -> None:
    placer = FirstFitPlacer()
    st = _state([0, 1, 1, 0, 1, 1, 1, 1])
    assert placer.place(_job(3), st) == [4, 5, 6]  # node 0 has only two whole GPUs
    assert placer.place(_job(2), st) == [1, 2]
    assert placer.place(_job(1, 0.5), _state([0.2, 0.6, 1, 1])) == [1]
    st.healthy[:] = False
    assert placer.place(_job(1), st) is None


def test_cluster_time_shares_a_gpu_and_interrupts_on_failure() -> None:
    cl = Cluster([slice(0, 2)])
    a, b = Job("a", 1, 0.5, 0, 100, 0.5, 0.5, 0.3, 0), Job("b", 1, 0.5, 0, 100, 0.5, 0.5, 0.3, 0)
    cl.queue.extend([a, b])
    started = cl.schedule(0.0, np.ones(2, dtype=bool))
    assert [j.gpus for j in started] == [(0,), (0,)]
    assert cl.util[0] == pytest.approx(0.75)  # 1 - (1 - 0.5)^2: two kernels time-sharing
    assert cl.procs[0] == 2
    hit = cl.interrupt_gpu(0, 10.0)
    assert {j.state for j in hit} == {"interrupted"} and cl.procs[0] == 0 and cl.util[0] == pytest.approx(0)


def test_openb_replay_keeps_times_counts_and_shares(tmp_path: Path) -> None:
    p = tmp_path / "pods.csv"
    p.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,"
                 "scheduled_time\n"
                 "p0,1,1,1,460,,LS,Running,100,700,100\n"
                 "p1,1,1,0,0,,LS,Running,150,900,150\n"
                 "p2,1,1,8,1000,,LS,Running,400,4000,400\n")
    rep = OpenbReplay(p, start=1000.0, seed=0)
    jobs = rep.arrivals(1000.0, 2000.0)
    assert [(j.id, j.n_gpus, j.share, j.submit, j.duration) for j in jobs] == [
        ("p0", 1, 0.46, 1000.0, 600.0), ("p2", 8, 1.0, 1300.0, 3600.0)]


def test_openb_pod_list_errors_say_where(tmp_path: Path) -> None:
    p = tmp_path / "pods.csv"
    p.write_text("name,num_gpu,gpu_milli,creation_time,deletion_time\np0,1,1000,soon,700\n")
    with pytest.raises(InputError) as e:
        OpenbReplay(p, 0.0, 0)
    assert e.value.line == 2 and e.value.column == "creation_time"


def test_real_openb_pod_list_replays() -> None:
    rep = OpenbReplay(require_data("alibaba-openb", "csv", "openb_pod_list_default.csv"), 0.0, 0)
    assert len(rep.jobs) == 7064
    assert sum(j.share < 1 for j in rep.jobs) > 2000


def test_genai_replay_reads_the_tarballs() -> None:
    rep = GenaiReplay(require_data("alibaba-genai-2026"), n_gpus=4, seed=0)
    assert rep.util.shape[0] == 4 and rep.util.shape[1] > 1300  # ~22.8 h at one minute
    assert rep.util.min() >= 0 and rep.util.max() <= 1
    util, mem = rep.at(600)
    assert util.shape == (4,) and mem.max() > 1e9  # bytes
