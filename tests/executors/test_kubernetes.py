"""The Kubernetes executor. No API server can run here: the Job manifests are validated offline against the
Kubernetes OpenAPI schema (kubernetes-validate) and the official client is exercised against the loopback
stand-in (tests/integrations/kube_api.py), where the test plays kubelet and job controller."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import JobQueue
from gpufleet.allocator.state import ClusterState, NodeSpec
from gpufleet.exporter.errors import InputError

from gpufleet.executors.base import ExecutorError, RunSpec
from gpufleet.executors.kubernetes import KubernetesExecutor, job_name, manifest
from gpufleet.jobs import QueueJobService
from gpufleet.settings import JobsSettings
from tests.executors.helpers import db_service, run_until
from tests.integrations.kube_api import KubeAPI, node
from tests.servers import skip_or_fail

try:
    import kubernetes_validate as kv
except ImportError:  # a test extra
    kv = None

IMAGE = "ghcr.io/example/train:1.0"


def _run(**kw: Any) -> RunSpec:
    d: dict[str, Any] = {"job_id": "j12-Train_big.v2", "attempt": 2, "command": ["python", "train.py"],
                         "node": "g1", "gpu_indexes": [0, 1], "gpu_uuids": ["GPU-a", "GPU-b"],
                         "log_path": "/tmp/x.log", "checkpoint_dir": "/data/ck/j12", "resume": True,
                         "env": {"LR": "0.1"}, "image": IMAGE, "max_runtime_s": 7200.5, "cpu_milli": 4000,
                         "memory_mib": 16384, "workdir": "/work"}
    d.update(kw)
    return RunSpec(**d)


@pytest.mark.parametrize("opts", [{}, {"pin": "nodeName", "gpu_resource": "amd.com/gpu", "checkpoint_pvc": "ckpt"}])
def test_job_manifests_pass_the_openapi_schema(opts: dict[str, Any]) -> None:
    if kv is None:
        skip_or_fail("kubernetes-validate is not installed")
    doc = manifest(_run(), grace_s=45, **opts)
    for version in ("1.29.0", kv.latest_version()):
        kv.validate(doc, version, strict=True)
    spec, pod = doc["spec"], doc["spec"]["template"]["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], pod["terminationGracePeriodSeconds"]) == (0, 7201, 45)
    assert doc["metadata"]["name"] == job_name("j12-Train_big.v2", 2) == "gf-j12-train-big-v2-2"
    assert doc["metadata"]["labels"]["gpufleet.io/job-id"] == "j12-Train_big.v2"
    assert doc["metadata"]["labels"]["gpufleet.io/attempt"] == "2" and pod["restartPolicy"] == "Never"
    [c] = pod["containers"]
    gpu = opts.get("gpu_resource", "nvidia.com/gpu")
    assert c["resources"]["limits"] == {gpu: "2", "memory": "16384Mi"} and c["resources"]["requests"]["cpu"] == "4000m"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["GPUFLEET_RESUME"] == "1" and env["LR"] == "0.1" and "CUDA_VISIBLE_DEVICES" not in env
    if opts:
        assert pod["nodeName"] == "g1" and env["GPUFLEET_CHECKPOINT_DIR"] == "/gpufleet/checkpoints/j12-Train_big.v2"
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "ckpt"
    else:
        assert pod["nodeSelector"] == {"kubernetes.io/hostname": "g1"}
        assert env["GPUFLEET_CHECKPOINT_DIR"] == "/data/ck/j12"
    assert len(job_name("x" * 200, 12)) == 63


def test_a_job_without_an_image_is_one_clear_error() -> None:
    with pytest.raises(ExecutorError, match=r"^job j1-a has no image: the kubernetes executor runs containers"):
        manifest(_run(job_id="j1-a", image=None))


@pytest.fixture
def api() -> Iterator[KubeAPI]:
    a = KubeAPI([node("g1", gpus=2)])
    try:
        yield a
    finally:
        a.stop()


def _service(api: KubeAPI, tmp: Path, grace_s: float = 20) -> QueueJobService:
    ex = KubernetesExecutor(api.api_client(), grace_s=grace_s, poll_interval_s=0.05)
    state = ClusterState.from_specs([NodeSpec("g1", 64000, 65536, 2, "A100", 80 << 30, uuids=["GPU-0", "GPU-1"])])
    return QueueJobService(JobQueue(state, make_policy("default")), clock=time.time, executor=ex,
                           settings=JobsSettings(grace_s=grace_s), data_dir=tmp)


def _created(api: KubeAPI) -> list[dict[str, Any]]:
    return [r[3] for r in api.requests if r[0] == "POST" and r[1].endswith("/jobs")]


def test_run_to_exit_code_and_log(api: KubeAPI, tmp_path: Path) -> None:
    svc = _service(api, tmp_path)
    [ok, bad] = svc.submit([{"name": "ok", "gpus": 1, "image": IMAGE, "command": ["python", "ok.py"]},
                            {"name": "bad", "gpus": 1, "image": IMAGE, "command": ["python", "bad.py"]}], "bob", None)
    [j_ok, j_bad] = _created(api)
    if kv is not None:
        kv.validate(j_ok, kv.latest_version(), strict=True)
    assert j_ok["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "g1"}
    api.run_pod(j_ok["metadata"]["name"])
    run_until(svc, lambda: svc.get(ok["id"])["state"] == "running", 10, "running")
    assert svc.get(bad["id"])["state"] == "starting"  # its container has not started
    api.finish(j_ok["metadata"]["name"], 0, log="epoch 1\nall done\n")
    api.run_pod(j_bad["metadata"]["name"])
    api.finish(j_bad["metadata"]["name"], 3, log="Traceback: boom\n")
    run_until(svc, lambda: svc.get(bad["id"])["state"] == "failed" and svc.get(ok["id"])["state"] == "succeeded",
              10, "exits")
    assert svc.get(bad["id"])["exit_code"] == 3
    assert "all done" in svc.logs(ok["id"])[0] and "Traceback: boom" in svc.logs(bad["id"])[0]
    assert not api.jobs  # finished Jobs are deleted once their log is kept


def test_a_job_without_an_image_is_refused_at_submission(api: KubeAPI, tmp_path: Path) -> None:
    svc = _service(api, tmp_path)
    with pytest.raises(InputError) as err:
        svc.submit([{"name": "bare", "gpus": 1, "command": ["python", "x.py"]},
                    {"name": "fine", "gpus": 1, "image": IMAGE, "command": ["python", "x.py"]},
                    {"name": "entry", "gpus": 1, "image": IMAGE}], "bob", None)
    assert str(err.value) == ("batch rejected: job bare: image is required: the kubernetes executor runs the command "
                              "in a container (add image: REGISTRY/NAME:TAG); job entry: command is required with "
                              f"image {IMAGE!r} (the argv to run in the container)")
    assert not svc.list() and not _created(api)  # all or nothing: nothing queued, no Job created


def test_a_restarted_service_reattaches_to_its_kubernetes_jobs(api: KubeAPI, tmp_path: Path) -> None:
    def service() -> QueueJobService:
        ex = KubernetesExecutor(api.api_client(), grace_s=5, poll_interval_s=0.05)
        state = ClusterState.from_specs([NodeSpec("g1", 64000, 65536, 2, "A100", 80 << 30, uuids=["GPU-0", "GPU-1"])])
        return db_service(state, ex, tmp_path, grace_s=5)

    first = service()
    [ok, long] = first.submit([{"name": "ok", "gpus": 1, "image": IMAGE, "command": ["python", "ok.py"]},
                               {"name": "long", "gpus": 1, "image": IMAGE, "command": ["sleep", "1d"]}], "bob", None)
    names = [j["metadata"]["name"] for j in _created(api)]
    for n in names:
        api.run_pod(n)
    run_until(first, lambda: all(first.get(j["id"])["state"] == "running" for j in (ok, long)), 10, "running")
    assert first.queue.jobs[ok["id"]].run["handle"] == {"namespace": "default", "job_name": names[0]}  # type: ignore[index]
    first.close()

    second = service()
    api.finish(names[0], 0, log="all done\n")
    run_until(second, lambda: second.get(ok["id"])["state"] == "succeeded", 10, "the reattached Job to finish")
    assert "all done" in second.logs(ok["id"])[0]
    second.cancel(long["id"])
    assert [r for r in api.requests if r[0] == "DELETE" and r[1].endswith(f"/jobs/{names[1]}")]
    run_until(second, lambda: not second.executor.active(long["id"]), 10, "the cancelled Job to go")
    assert second.get(long["id"])["state"] == "cancelled" and len(_created(api)) == 2


def test_cancel_deletes_the_job_foreground_with_the_grace(api: KubeAPI, tmp_path: Path) -> None:
    svc = _service(api, tmp_path, grace_s=20)
    [job] = svc.submit([{"name": "long", "gpus": 2, "image": IMAGE, "command": ["sleep", "1d"]}], "bob", None)
    [created] = _created(api)
    api.run_pod(created["metadata"]["name"])
    run_until(svc, lambda: svc.get(job["id"])["state"] == "running", 10, "running")
    svc.cancel(job["id"])
    [(_, path, _, body)] = [r for r in api.requests if r[0] == "DELETE"]
    assert path.endswith(f"/jobs/{created['metadata']['name']}")
    assert body["propagationPolicy"] == "Foreground" and body["gracePeriodSeconds"] == 20
    run_until(svc, lambda: not svc.executor.active(job["id"]), 10, "the run to end")
    assert svc.get(job["id"])["state"] == "cancelled" and not svc.allocations()


def test_a_not_ready_node_makes_the_run_lost_and_it_restarts_with_resume(api: KubeAPI, tmp_path: Path) -> None:
    svc = _service(api, tmp_path)
    [job] = svc.submit([{"name": "train", "gpus": 1, "task_type": "training", "image": IMAGE,
                         "command": ["python", "train.py"]}], "alice", "ml")
    [first] = _created(api)
    api.run_pod(first["metadata"]["name"])
    run_until(svc, lambda: svc.get(job["id"])["state"] == "running", 10, "running")
    api.set_ready("g1", False)
    run_until(svc, lambda: svc.get(job["id"])["restarts"] == 1, 10, "the run to be lost and requeued")
    assert "node g1 is not Ready" in (svc.get(job["id"])["reason"] or "")
    time.sleep(0.3)
    for _ in range(5):
        svc.tick(time.time())
    assert len(_created(api)) == 1  # nothing placed on the NotReady node
    api.set_ready("g1", True)
    run_until(svc, lambda: len(_created(api)) == 2, 10, "the second attempt")
    second = _created(api)[1]
    env = {e["name"]: e["value"] for e in second["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert second["metadata"]["labels"]["gpufleet.io/attempt"] == "2" and env["GPUFLEET_RESUME"] == "1"
    assert env["GPUFLEET_CHECKPOINT_DIR"] == str(svc.checkpoint_dir / job["id"])
