"""Process attribution from fixture /proc trees of each cgroup format."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gpufleet.exporter.procattr import ProcAttributor, parse_cgroup
from gpufleet.exporter.sources.nvml import NvmlSource

from tests.exporter.fake_pynvml import GIB, FakeGpu, FakeNvml

CID = "3f4e" + "0123456789abcdef" * 3 + "a1b2c3d4e5f6"
UID = "0f3c2a1e-1111-2222-3333-444455556666"
UID_ = UID.replace("-", "_")

V1_OTHER = "12:pids:/user.slice\n11:cpuset:/\n"

CASES = {
    "docker cgroupfs v1": (
        V1_OTHER + f"9:memory:/docker/{CID}\n4:cpu,cpuacct:/docker/{CID}\n",
        dict(container_id=CID, runtime="docker", pod_uid="")),
    "docker systemd v2": (
        f"0::/system.slice/docker-{CID}.scope\n", dict(container_id=CID, runtime="docker", pod_uid="")),
    "podman v2": (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope/container\n",
                  dict(container_id=CID, runtime="podman")),
    "containerd v1 (no kubernetes)": (
        V1_OTHER + f"9:memory:/default/{CID}\n", dict(container_id=CID, runtime="containerd", pod_uid="")),
    "kubelet cgroupfs v1 containerd": (
        V1_OTHER + f"9:memory:/kubepods/burstable/pod{UID}/{CID}\n",
        dict(container_id=CID, pod_uid=UID, pod=UID)),
    "kubelet cgroupfs v1 guaranteed": (
        f"5:memory:/kubepods/pod{UID}/{CID}\n", dict(container_id=CID, pod_uid=UID)),
    "kubelet systemd v1 docker": (
        f"9:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{CID}.scope\n",
        dict(container_id=CID, pod_uid=UID, runtime="docker")),
    "kubelet systemd v2 containerd": (
        f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/"
        f"cri-containerd-{CID}.scope\n", dict(container_id=CID, pod_uid=UID, runtime="containerd")),
    "kubelet systemd v2 cri-o": (
        f"0::/kubepods.slice/kubepods-pod{UID_}.slice/crio-{CID}.scope\n",
        dict(container_id=CID, pod_uid=UID, runtime="cri-o")),
    "kubelet cgroupfs v2 cri-o": (
        f"0::/kubepods/besteffort/pod{UID}/crio-{CID}\n", dict(container_id=CID, pod_uid=UID, runtime="cri-o")),
    "kind / k3s nested v2": (
        f"0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
        f"kubelet-kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
        dict(container_id=CID, pod_uid=UID)),
    "slurm v1": ("7:devices:/slurm/uid_1000/job_4711/step_0/task_0\n4:memory:/slurm/uid_1000/job_4711/step_0\n",
                 dict(container_id="", pod_uid="", slurm_job_id="4711")),
    "slurm v2": ("0::/system.slice/slurmstepd.scope/job_99/step_batch/user/task_0\n",
                 dict(slurm_job_id="99", container_id="")),
    "host process v2": ("0::/user.slice/user-1000.slice/session-3.scope\n",
                        dict(container_id="", pod_uid="", runtime="", slurm_job_id="")),
}


def make_proc(root: Path, pid: int, cgroup: str, comm: str = "python", uid: int | None = None) -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "cgroup").write_text(cgroup)
    (d / "comm").write_text(comm + "\n")
    u = os.getuid() if uid is None else uid
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t{u}\t{u}\t{u}\t{u}\n")


@pytest.mark.parametrize("case", sorted(CASES))
def test_cgroup_formats(case: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    make_proc(tmp_path / "proc", 100, text)
    att = ProcAttributor(tmp_path / "proc", tmp_path / "log").attribute(100)
    for key, value in expected.items():
        assert getattr(att, key) == value, (case, key)
    assert att.container == (CID[:12] if expected.get("container_id") else "")
    assert att == parse_cgroup(text)  # no kubelet logs here: the cgroup alone decides


def test_kubelet_logs_give_pod_name_namespace_container(tmp_path: Path) -> None:
    make_proc(tmp_path / "proc", 100, f"0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope\n")
    other = "b" * 64
    make_proc(tmp_path / "proc", 101, f"0::/kubepods/burstable/pod{UID}/{other}\n")
    (tmp_path / "log" / "containers").mkdir(parents=True)
    (tmp_path / "log" / "containers" / f"trainer-0_ml-team_pytorch-{CID}.log").symlink_to("/nonexistent")
    (tmp_path / "log" / "pods" / f"ml-team_trainer-0_{UID}").mkdir(parents=True)
    attr = ProcAttributor(tmp_path / "proc", tmp_path / "log")
    att = attr.attribute(100)
    assert (att.pod, att.namespace, att.container, att.pod_uid) == ("trainer-0", "ml-team", "pytorch", UID)
    side = attr.attribute(101)  # a sidecar whose log link is not there: the pod folder still names the pod
    assert (side.pod, side.namespace, side.container) == ("trainer-0", "ml-team", other[:12])


def test_gone_or_unreadable_pid(tmp_path: Path) -> None:
    attr = ProcAttributor(tmp_path / "proc", tmp_path / "log")
    assert attr.attribute(99999).container == "" and attr.process_name(99999) == "" and attr.user(99999) == ""


def test_process_series_follow_processes(tmp_path: Path) -> None:
    """Two pods time-slicing one GPU: each process is attributed; ended processes' series vanish."""
    proc, log = tmp_path / "proc", tmp_path / "log"
    make_proc(proc, 4242, f"0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope\n", comm="train")
    make_proc(proc, 5353, f"0::/system.slice/docker-{'c' * 64}.scope\n", comm="infer")
    (log / "containers").mkdir(parents=True)
    (log / "containers" / f"trainer-0_ml-team_pytorch-{CID}.log").touch()
    gpu = FakeGpu("GPU-a", processes=[(4242, 6 * GIB), (5353, 2 * GIB), (6464, None)],
                  process_util=[(4242, 10, 70, 30), (4242, 20, 80, 35), (5353, 20, 10, 5)])
    fake = FakeNvml([gpu])
    with NvmlSource(nvml=fake.module, collectors=["processes"], proc_root=proc, log_root=log) as src:
        snap = src.collect(1.0)
        gpu.processes = [(5353, 2 * GIB)]
        gpu.process_util = []
        later = src.collect(2.0)
    k8s = (("container", "pytorch"), ("namespace", "ml-team"), ("pid", "4242"), ("pod", "trainer-0"))
    assert snap.value("GPU-a", "processes") == 3
    assert snap.value("GPU-a", "process_memory", k8s) == 6 * GIB
    assert snap.value("GPU-a", "process_sm_util", k8s) == pytest.approx(0.80)  # the latest sample
    assert snap.value("GPU-a", "process_memory_util", k8s) == pytest.approx(0.35)
    dock = (("container", "c" * 12), ("namespace", ""), ("pid", "5353"), ("pod", ""))
    assert snap.value("GPU-a", "process_memory", dock) == 2 * GIB
    # usedGpuMemory not available (NVML_VALUE_NOT_AVAILABLE -> None): absent, its info series still there
    assert not [s for s in snap.samples if s.field == "process_memory" and ("pid", "6464") in s.labels]
    infos = {dict(s.labels)["pid"]: dict(s.labels) for s in snap.samples if s.field == "process_info"}
    assert set(infos) == {"4242", "5353", "6464"}
    assert infos["4242"]["process_name"] == "train" and infos["4242"]["pod_uid"] == UID
    assert infos["4242"]["container_id"] == CID and infos["4242"]["user"]
    assert snap.value("GPU-a", "pod_memory", (("container", "pytorch"), ("namespace", "ml-team"),
                                              ("pod", "trainer-0"))) == 6 * GIB
    pids = {dict(s.labels).get("pid") for s in later.samples if s.field.startswith("process_")}
    assert pids == {"5353"} and later.value("GPU-a", "processes") == 1
    assert not [s for s in later.samples if s.field == "pod_memory"]


def test_old_driver_process_list_falls_back_to_v2(tmp_path: Path) -> None:
    fake = FakeNvml([FakeGpu("GPU-a", processes=[(31, GIB)])], missing={"nvmlDeviceGetComputeRunningProcesses"})
    fake.module.__dict__["nvmlDeviceGetComputeRunningProcesses_v2"] = fake._wrap(
        "nvmlDeviceGetComputeRunningProcesses_v2", fake.nvmlDeviceGetComputeRunningProcesses)
    with NvmlSource(nvml=fake.module, collectors=["processes"], proc_root=tmp_path) as src:
        snap = src.collect(1.0)
    assert snap.value("GPU-a", "processes") == 1
    assert all(s.success for s in snap.stats)
