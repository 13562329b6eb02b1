"""The Slurm integration against a real single-host Slurm (slurmctld + slurmd, 8 fake GPUs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpufleet.exporter.errors import BackendUnavailable

from gpufleet.integrations.remediation import RemediationPolicy, Remediator
from gpufleet.integrations.slurm import SlurmClient, SlurmJob, SlurmNodeManager
from gpufleet.integrations.slurm_mirror import (
    cluster_state,
    held_gpus,
    job_info_samples,
    pending_gpus,
    pending_reason,
)
from tests.servers import Slurm, wait_until

pytestmark = [pytest.mark.server, pytest.mark.slow]
NODE = Slurm.NODE


@pytest.fixture(scope="module")
def cluster() -> Iterator[Slurm]:
    s = Slurm(gpus=8)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def slurm(cluster: Slurm) -> Iterator[Slurm]:
    yield cluster
    cluster.clear_queue()


@pytest.fixture
def client(slurm: Slurm) -> SlurmClient:
    return SlurmClient(conf=str(slurm.conf), timeout=10.0)


def _wait_state(client: SlurmClient, job_id: str, state: str) -> SlurmJob:
    found: dict[str, SlurmJob] = {}

    def check() -> bool:
        for j in client.jobs():
            if j.job_id == job_id and j.state == state:
                found["j"] = j
                return True
        return False
    wait_until(check, 20, f"job {job_id} {state}", interval=0.3)
    return found["j"]


def _risk(node: str, index: int, value: float) -> dict[str, dict[str, float]]:
    return {f"{node}/gpu{index}": {"24h": value}}


def test_inventory_and_placed_jobs_mirror_into_gpufleet(client: SlurmClient, slurm: Slurm) -> None:
    [node] = client.nodes()
    assert (node.name, node.gpus, node.drained) == (NODE, 8, False)
    a = client.submit("sleep 60", gpus_per_node=2, name="two", output=f"{slurm.dir}/%j.out")
    b = client.submit("sleep 60", gpus_per_node=3, name="three", output=f"{slurm.dir}/%j.out")
    ja, jb = _wait_state(client, a, "RUNNING"), _wait_state(client, b, "RUNNING")
    assert len(ja.gpu_indices[NODE]) == 2 and len(jb.gpu_indices[NODE]) == 3
    assert not set(ja.gpu_indices[NODE]) & set(jb.gpu_indices[NODE])
    assert (ja.user, ja.partition, ja.gpus) == ("root", "gpu", 2)

    jobs = client.jobs()
    state = cluster_state(client.nodes(), jobs)
    assert held_gpus(state) == {NODE: sorted(ja.gpu_indices[NODE] + jb.gpu_indices[NODE])}
    assert int(state.n_full[0]) == 3
    info = job_info_samples(jobs, 100.0, node=NODE)
    by_uuid = {s.uuid: dict(s.labels) for s in info}
    assert {u for u, lab in by_uuid.items() if lab["job_id"] == a} == {f"{NODE}/gpu{i}" for i in ja.gpu_indices[NODE]}
    assert all(s.field == "slurm_job_info" and s.value == 1.0 for s in info)

    # 4 more GPUs than the 3 free: the job waits and its GPUs are pending demand
    c = client.submit("sleep 60", gpus_per_node=4, name="four", output=f"{slurm.dir}/%j.out")
    _wait_state(client, c, "PENDING")
    assert pending_gpus(client.jobs()) == 4.0


def test_risk_crossing_drains_then_resume_brings_node_back(client: SlurmClient, slurm: Slurm) -> None:
    audit: list = []
    rem = Remediator(SlurmNodeManager(client), RemediationPolicy(threshold=0.5, resume_below=0.2, max_share=1.0),
                     audit=audit.append)
    assert rem.step(_risk(NODE, 3, 0.3), now=1.0) == []  # under the threshold: nothing
    [act] = rem.step(_risk(NODE, 3, 0.87), now=2.0)
    assert (act.kind, act.outcome, act.node) == ("hold", "done", NODE)
    [node] = client.nodes()
    assert node.drained and node.reason.startswith("gpufleet:")
    assert "0.87" in node.reason and "24h" in node.reason
    j = client.submit("sleep 30", gpus_per_node=1, output=f"{slurm.dir}/%j.out")
    pend = _wait_state(client, j, "PENDING")
    # Slurm says the node is unavailable (wording depends on the scheduler pass); gpufleet adds why
    assert pend.reason in ("ReqNodeNotAvail", "Resources") and ("DRAINED" in pend.description or NODE in pend.description)
    assert "gpufleet: failure risk 0.87 within 24h" in pending_reason(pend, client.nodes())
    assert rem.step(_risk(NODE, 3, 0.4), now=3.0) == []  # between resume_below and threshold: held
    [back] = rem.step(_risk(NODE, 3, 0.1), now=4.0)
    assert (back.kind, back.outcome) == ("release", "done")
    assert not client.nodes()[0].drained
    _wait_state(client, j, "RUNNING")
    assert [a.kind for a in audit] == ["hold", "release"]


def test_operator_resume_sticks(client: SlurmClient, slurm: Slurm) -> None:
    rem = Remediator(SlurmNodeManager(client), RemediationPolicy(max_share=1.0))
    rem.step(_risk(NODE, 0, 0.9), now=10.0)
    assert client.nodes()[0].drained
    act = rem.release(NODE, operator="alice", now=11.0)
    assert (act.outcome, act.actor) == ("done", "alice")
    slurm.clear_queue()  # waits until the node answers again (idle, not "idle*")
    assert client.nodes()[0].schedulable
    assert rem.step(_risk(NODE, 0, 0.9), now=12.0) == []  # the operator's word holds
    assert not client.nodes()[0].drained
    fresh = Remediator(SlurmNodeManager(client), RemediationPolicy(max_share=1.0, dry_run=True))
    assert [a.kind for a in fresh.step(_risk(NODE, 0, 0.9), now=12.0)] == ["hold"]  # without it: would drain


def test_share_limit_and_dry_run_change_nothing(client: SlurmClient) -> None:
    limited = Remediator(SlurmNodeManager(client), RemediationPolicy(max_share=0.5))  # 1 node: 0 may go
    [skip] = limited.step(_risk(NODE, 1, 0.99), now=1.0)
    assert (skip.kind, skip.outcome) == ("skip", "refused: limit")
    dry = Remediator(SlurmNodeManager(client), RemediationPolicy(max_share=1.0, dry_run=True))
    [act] = dry.step(_risk(NODE, 1, 0.99), now=1.0)
    assert (act.kind, act.outcome) == ("hold", "dry-run")
    [node] = client.nodes()
    assert not node.drained and node.reason == ""


def test_more_gpus_than_exist_is_reported_with_slurms_message(client: SlurmClient) -> None:
    with pytest.raises(BackendUnavailable, match="Requested node configuration is not available"):
        client.submit("true", gpus_per_node=9)


def test_controller_down_times_out(slurm: Slurm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.servers import free_port

    conf = tmp_path / "slurm.conf"
    text = slurm.conf.read_text().replace("SlurmctldPort=", f"SlurmctldPort={free_port()}\n#")
    conf.write_text(text)
    with pytest.raises(BackendUnavailable, match="slurm"):
        SlurmClient(conf=str(conf), timeout=3.0).nodes()


def test_cli_status_and_remediate(client: SlurmClient, slurm: Slurm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from gpufleet.cli import app

    cfg = tmp_path / "gpufleet.toml"
    cfg.write_text(f'[cluster]\nslurm_conf = "{slurm.conf}"\nremediation_max_share = 1.0\n')
    j = client.submit("sleep 60", gpus_per_node=2, output=f"{slurm.dir}/%j.out")
    _wait_state(client, j, "RUNNING")
    runner = CliRunner()
    r = runner.invoke(app, ["cluster", "slurm", "--json", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["nodes"][0]["gpus"] == 8, doc
    [mine] = [x for x in doc["jobs"] if x["job_id"] == j]
    assert len(mine["gpu_indices"][NODE]) == 2, doc
    risk = tmp_path / "risk.json"
    risk.write_text(json.dumps(_risk(NODE, 5, 0.95)))
    r = runner.invoke(app, ["cluster", "remediate", "--risk", str(risk), "--config", str(cfg)])
    assert r.exit_code == 0 and "dry-run" in r.output and not client.nodes()[0].drained
    r = runner.invoke(app, ["cluster", "remediate", "--risk", str(risk), "--config", str(cfg), "--apply"])
    assert r.exit_code == 0, r.output
    assert client.nodes()[0].reason.startswith("gpufleet: failure risk 0.95")
