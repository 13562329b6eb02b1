"""Parsing Slurm's JSON as 22.05 (tested live in test_slurm_server) and 23.x+ shape it, host lists, GRES."""

from __future__ import annotations

import pytest
from gpufleet.exporter.errors import BackendUnavailable, ConfigError

from gpufleet.integrations.remediation import RemediationPolicy
from gpufleet.integrations.slurm import (
    SlurmClient,
    count_array_tasks,
    expand_hostlist,
    gpu_count,
    gpu_indices,
    parse_job,
    parse_node,
)
from gpufleet.integrations.slurm_mirror import cluster_state, held_gpus, pending_by_partition, pending_gpus


def test_hostlists_and_gres_strings() -> None:
    assert expand_hostlist("gpu[01-03,7],login1") == ["gpu01", "gpu02", "gpu03", "gpu7", "login1"]
    assert expand_hostlist("r[1-2]n[1-2]") == ["r1n1", "r1n2", "r2n1", "r2n2"]
    assert gpu_indices("gpu:a100:3(IDX:0,2-3)") == (0, 2, 3)
    assert gpu_indices("gpu(IDX:5),mps:100(IDX:0)") == (5,)
    assert gpu_count("gpu:h100:8(S:0-1)") == (8, "h100")
    assert gpu_count("gres:gpu:2") == (2, "")
    assert gpu_count("cpu=4,mem=8G,node=1,gres/gpu=4") == (4, "")
    assert gpu_count("gres/gpu:a100:2") == (2, "a100")


def test_23x_shapes() -> None:
    job = parse_job({"job_id": 42, "name": "train", "user_name": "ana", "partition": "gpu",
                     "job_state": ["RUNNING"], "state_reason": "None", "nodes": "g[1-2]",
                     "node_count": {"set": True, "infinite": False, "number": 2},
                     "tres_per_node": "gres/gpu:4", "gres_detail": ["gpu:h100:4(IDX:0-3)", "gpu:h100:4(IDX:4-7)"],
                     "submit_time": {"set": True, "number": 100}, "start_time": {"set": True, "number": 110}})
    assert (job.job_id, job.state, job.gpus, job.node_count) == ("42", "RUNNING", 8, 2)
    assert job.gpu_indices == {"g1": (0, 1, 2, 3), "g2": (4, 5, 6, 7)} and job.start_time == 110.0
    node = parse_node({"name": "g1", "state": ["IDLE", "DRAIN"], "gres": "gpu:h100:8(S:0-1)",
                       "gres_used": "gpu:h100:4(IDX:0-3)", "cpus": 128, "real_memory": 1024000,
                       "partitions": ["gpu"], "reason": "gpufleet: failure risk 0.70 within 24h"})
    assert node.drained and not node.schedulable and (node.gpus, node.gpus_used, node.gpu_type) == (8, 4, "h100")
    g2 = parse_node({"name": "g2", "state": "mixed", "state_flags": [], "gres": "gpu:h100:8", "gres_used": "gpu:h100:4",
                     "cpus": 128, "real_memory": 1024000, "partitions": ["gpu"]})
    st = cluster_state([node, g2], [job])
    assert held_gpus(st) == {"g1": [0, 1, 2, 3], "g2": [4, 5, 6, 7]}
    assert int(st.node_health[0]) == 1 and int(st.node_health[1]) == 0


def test_pending_demand_leaves_out_held_and_impossible_jobs() -> None:
    def pend(i: int, gpus: int, reason: str, part: str = "gpu") -> dict:  # type: ignore[type-arg]
        return {"job_id": i, "job_state": "PENDING", "state_reason": reason, "tres_per_node": f"gres:gpu:{gpus}",
                "node_count": 1, "partition": part, "nodes": "", "gres_detail": []}
    jobs = [parse_job(pend(1, 4, "Resources")), parse_job(pend(2, 2, "Priority", "big")),
            parse_job(pend(3, 8, "JobHeldUser")), parse_job(pend(4, 9, "BadConstraints"))]
    assert pending_gpus(jobs) == 6.0 and pending_gpus(jobs, partition="big") == 2.0
    assert pending_by_partition(jobs) == [((("partition", "big"),), 2.0), ((("partition", "gpu"),), 4.0)]


def test_missing_binary_and_bad_policy_are_typed_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BackendUnavailable, match="cannot run sinfo"):
        SlurmClient(bin_dir=str(tmp_path)).nodes()
    with pytest.raises(ConfigError):
        RemediationPolicy(threshold=0.2, resume_below=0.5)


def test_pending_job_array_counts_every_task() -> None:
    assert [count_array_tasks(s) for s in ("", "8-199", "1,3,5-7", "0-15:2", "0-99%10")] == [1, 192, 5, 8, 100]
    arr = parse_job({"job_id": 7, "job_state": "PENDING", "state_reason": "Resources", "tres_per_node": "gres:gpu:2",
                     "node_count": 1, "partition": "gpu", "nodes": "", "array_task_string": "0-9%2"})
    assert (arr.tasks, pending_gpus([arr])) == (10, 20.0)
