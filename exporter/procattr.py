"""Process -> container / Kubernetes pod / Slurm job attribution from ``/proc/<pid>/cgroup``.

NVML reports host pids; the cgroup path of each pid says which container (and, under kubelet, which
pod) it runs in. Handled path shapes (cgroup v1 ``N:controller:/path`` and v2 ``0::/path`` lines):

* docker, cgroupfs driver:       ``/docker/<64 hex>``
* docker / podman, systemd:      ``/system.slice/docker-<id>.scope``, ``.../libpod-<id>.scope``
* kubelet, cgroupfs driver:      ``/kubepods/burstable/pod<uid>/<id>`` (containerd, docker), ``.../crio-<id>``
* kubelet, systemd driver:       ``/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope``
  (or ``crio-<id>.scope``, ``docker-<id>.scope``), nested under ``kubelet.slice`` on kind/k3s
* containerd without Kubernetes: ``/<namespace>/<64 hex>`` (e.g. ``/default/<id>``), ``nerdctl-<id>.scope``
* Slurm:                         ``/slurm/uid_<n>/job_<id>/step_<n>`` (and ``system.slice/slurmstepd.scope/job_<id>``)

The pod name, namespace and container name are not in the cgroup path: they come from kubelet's log
links (``/var/log/containers/<pod>_<namespace>_<container>-<container id>.log``) and pod log folders
(``/var/log/pods/<namespace>_<pod>_<uid>``) when those are readable; otherwise ``pod`` is the pod UID
and ``container`` the short container id. The exporter needs the host's /proc (hostPID in a pod).
"""

from __future__ import annotations

import pwd
import re
from dataclasses import dataclass, replace
from pathlib import Path

_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_CID = re.compile(r"^(?:(docker|cri-containerd|crio|libpod|nerdctl|containerd)-)?([0-9a-f]{64})(?:\.scope)?$")
_SLURM = re.compile(r"/job_(\d+)(?:/|$)")
_LOG_LINK = re.compile(r"^(?P<pod>[^_]+)_(?P<ns>[^_]+)_(?P<container>.+)-(?P<cid>[0-9a-f]{64})\.log$")
_POD_DIR = re.compile(r"^(?P<ns>[^_]+)_(?P<pod>[^_]+)_(?P<uid>[0-9a-f-]{36})$")
_RUNTIMES = {"docker": "docker", "cri-containerd": "containerd", "crio": "cri-o", "libpod": "podman",
             "nerdctl": "containerd", "containerd": "containerd"}


@dataclass(frozen=True, slots=True)
class Attribution:
    """Where a process runs. Empty strings mean "not in a container / pod / job" or unknown."""

    container: str = ""
    container_id: str = ""
    pod: str = ""
    pod_uid: str = ""
    namespace: str = ""
    runtime: str = ""
    slurm_job_id: str = ""


def parse_cgroup(text: str) -> Attribution:
    """Attribute one ``/proc/<pid>/cgroup`` file's content (v1, v2 or hybrid)."""
    best = Attribution()
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        got = parse_path(parts[2])
        # prefer the line that says the most (a pod beats a bare container beats nothing)
        if (bool(got.pod_uid), bool(got.container_id), bool(got.slurm_job_id)) > (
                bool(best.pod_uid), bool(best.container_id), bool(best.slurm_job_id)):
            best = got
    return best


def parse_path(path: str) -> Attribution:
    """Attribute one cgroup path."""
    parts = [p for p in path.split("/") if p]
    pod_uid = ""
    m = _UID.search(path)
    if m and ("kubepods" in path):
        pod_uid = m.group(1).replace("_", "-")
    cid = runtime = ""
    for part in reversed(parts):
        if part.startswith("crio-conmon-"):
            continue
        mc = _CID.match(part)
        if mc:
            cid = mc.group(2)
            runtime = _RUNTIMES.get(mc.group(1) or "", "")
            if not runtime:
                if "docker" in parts:
                    runtime = "docker"
                elif not pod_uid and len(parts) >= 2:
                    runtime = "containerd"  # /<containerd namespace>/<id>
            break
    job = ""
    if "slurm" in path:
        mj = _SLURM.search(path)
        if mj:
            job = mj.group(1)
    return Attribution(container=cid[:12], container_id=cid, pod=pod_uid, pod_uid=pod_uid,
                       runtime=runtime, slurm_job_id=job)


class ProcAttributor:
    """Reads ``<proc_root>/<pid>/...`` and kubelet's log folders; the roots are configurable for tests."""

    def __init__(self, proc_root: Path = Path("/proc"), log_root: Path = Path("/var/log")) -> None:
        self.proc_root = Path(proc_root)
        self.log_root = Path(log_root)
        self._containers: dict[str, tuple[str, str, str]] = {}  # cid -> (pod, namespace, container)
        self._pods: dict[str, tuple[str, str]] = {}  # pod uid -> (pod, namespace)
        self._scanned = False

    def begin_cycle(self) -> None:
        """Allow one rescan of kubelet's log folders in this cycle (new pods appear over time)."""
        self._scanned = False

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        try:
            for entry in (self.log_root / "containers").iterdir():
                m = _LOG_LINK.match(entry.name)
                if m:
                    self._containers[m["cid"]] = (m["pod"], m["ns"], m["container"])
        except OSError:
            pass
        try:
            for entry in (self.log_root / "pods").iterdir():
                m = _POD_DIR.match(entry.name)
                if m:
                    self._pods[m["uid"]] = (m["pod"], m["ns"])
        except OSError:
            pass

    def _read(self, pid: int, name: str) -> str | None:
        try:
            return (self.proc_root / str(pid) / name).read_text(errors="replace")
        except OSError:
            return None

    def attribute(self, pid: int) -> Attribution:
        """The container / pod / job of ``pid``; an empty Attribution when unknown or gone."""
        text = self._read(pid, "cgroup")
        if text is None:
            return Attribution()
        att = parse_cgroup(text)
        if att.container_id or att.pod_uid:
            known = self._containers.get(att.container_id) or self._pods.get(att.pod_uid)
            if known is None:
                self._scan()
            if att.container_id in self._containers:
                pod, ns, container = self._containers[att.container_id]
                att = replace(att, pod=pod, namespace=ns, container=container)
            elif att.pod_uid in self._pods:
                pod, ns = self._pods[att.pod_uid]
                att = replace(att, pod=pod, namespace=ns)
        return att

    def process_name(self, pid: int) -> str:
        text = self._read(pid, "comm")
        return text.strip() if text else ""

    def user(self, pid: int) -> str:
        text = self._read(pid, "status")
        if not text:
            return ""
        for line in text.splitlines():
            if line.startswith("Uid:"):
                fields = line.split()
                if len(fields) < 2:
                    return ""
                uid = int(fields[1])
                try:
                    return pwd.getpwuid(uid).pw_name
                except KeyError:
                    return str(uid)
        return ""
