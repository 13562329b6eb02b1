"""The Kubernetes executor: each run is a ``batch/v1`` Job pinned to the node gpufleet's policy chose.

The Job runs the job's ``image`` with its ``command`` and ``env`` (plus ``GPUFLEET_*``; the device plugin
sets ``CUDA_VISIBLE_DEVICES``), asks for the GPUs as ``nvidia.com/gpu`` (or ``amd.com/gpu``) limits, is
pinned by ``nodeName`` or a ``kubernetes.io/hostname`` nodeSelector, has ``backoffLimit: 0`` (gpufleet
retries itself), ``activeDeadlineSeconds`` from ``max_runtime_s``, ``terminationGracePeriodSeconds`` = the
stop grace period, and labels naming the job and attempt. An optional PersistentVolumeClaim is mounted for
checkpoints, so a restarted attempt resumes from the previous one's checkpoint.

The executor polls the Job and its pod (the container's exit code), and the node: a node whose ``Ready``
condition is not ``True`` makes the run ``lost`` (the job service requeues it and places nothing there until
the node is Ready again). A stop deletes the Job with ``propagationPolicy: Foreground`` and the grace period.
When a run ends its pod's log is appended to the job's log file, then the Job is deleted. A run's handle in
the job service's run table is its namespace and Job name: a restarted ``serve`` watches the Job again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.executors.base import ExecEvent, Executor, ExecutorError, RunSpec, job_env, read_log
from gpufleet.exporter.errors import ConfigError

log = logging.getLogger(__name__)

CHECKPOINT_MOUNT = "/gpufleet/checkpoints"
_NOT_PASSED = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")  # the device plugin sets them
JOB_ID_LABEL = "gpufleet.io/job-id"
ATTEMPT_LABEL = "gpufleet.io/attempt"


def api_client(cluster: Any) -> Any:
    """A ``kubernetes`` ApiClient from ``cluster.kubernetes_kubeconfig``, or the in-cluster service account."""
    from kubernetes import client, config

    try:
        if cluster.kubernetes_kubeconfig:
            return config.new_client_from_config(config_file=str(cluster.kubernetes_kubeconfig))
        config.load_incluster_config()
    except (config.ConfigException, OSError) as exc:
        raise ConfigError(f"executor kubernetes: cannot load Kubernetes credentials: {exc}") from None
    return client.ApiClient()


def job_name(job_id: str, attempt: int) -> str:
    """A DNS-1123 name for one attempt's Job (lower case, at most 63 characters)."""
    base = re.sub(r"[^a-z0-9-]+", "-", job_id.lower()).strip("-")
    suffix = f"-{attempt}"
    return f"gf-{base}"[:63 - len(suffix)].rstrip("-") + suffix


def _label(value: str) -> str:
    v = re.sub(r"[^A-Za-z0-9._-]+", "-", value)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", v) or "x"


def manifest(run: RunSpec, *, namespace: str = "default", gpu_resource: str = "nvidia.com/gpu",
             pull_policy: str = "IfNotPresent", pin: str = "nodeSelector", grace_s: float = 30.0,
             checkpoint_pvc: str | None = None) -> dict[str, Any]:
    """The ``batch/v1`` Job of one run (a plain dict, as the API server takes it)."""
    if not run.image:
        raise ExecutorError(f"job {run.job_id} has no image: the kubernetes executor runs containers "
                            "(add image: REGISTRY/NAME:TAG to the job)")
    if not run.command:
        raise ExecutorError(f"job {run.job_id} has no command to run in its image")
    ckpt = f"{CHECKPOINT_MOUNT}/{_label(run.job_id)}" if checkpoint_pvc else run.checkpoint_dir
    env = job_env(run.__class__(**{**run.to_dict(), "checkpoint_dir": ckpt}), base={})
    labels = {"app.kubernetes.io/managed-by": "gpufleet", JOB_ID_LABEL: _label(run.job_id),
              ATTEMPT_LABEL: str(run.attempt)}
    gpus = len(run.gpu_uuids) or len(run.gpu_indexes)
    limits: dict[str, str] = {gpu_resource: str(gpus)} if gpus else {}
    requests: dict[str, str] = {}
    if run.cpu_milli:
        requests["cpu"] = f"{run.cpu_milli}m"
    if run.memory_mib:
        requests["memory"] = limits["memory"] = f"{run.memory_mib}Mi"
    container: dict[str, Any] = {
        "name": "job", "image": run.image, "imagePullPolicy": pull_policy, "command": list(run.command),
        "env": [{"name": k, "value": v} for k, v in sorted(env.items()) if k not in _NOT_PASSED],
        "resources": {k: v for k, v in (("limits", limits), ("requests", requests)) if v},
    }
    if run.workdir:
        container["workingDir"] = run.workdir
    pod: dict[str, Any] = {"restartPolicy": "Never", "terminationGracePeriodSeconds": max(0, math.ceil(grace_s)),
                           "containers": [container]}
    if pin == "nodeName":
        pod["nodeName"] = run.node
    else:
        pod["nodeSelector"] = {"kubernetes.io/hostname": run.node}
    if checkpoint_pvc:
        container["volumeMounts"] = [{"name": "checkpoints", "mountPath": CHECKPOINT_MOUNT}]
        pod["volumes"] = [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": checkpoint_pvc}}]
    spec: dict[str, Any] = {"backoffLimit": 0, "template": {"metadata": {"labels": labels}, "spec": pod}}
    if run.max_runtime_s:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(run.max_runtime_s))
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(run.job_id, run.attempt), "namespace": namespace, "labels": labels,
                         "annotations": {JOB_ID_LABEL: run.job_id}},
            "spec": spec}


@dataclass
class _KRun:
    run: RunSpec
    name: str
    reported: bool = False
    kill_at: float | None = None
    """Monotonic time to delete without grace after a stop (None: not stopping)."""
    stopping: bool = False
    lost: str | None = None
    pod_log: str | None = None
    """The pod's log as last read (kept while a stopped pod terminates, written when it has gone)."""


def _api_message(exc: Exception) -> str:
    from gpufleet.integrations.k8s import _message

    return _message(exc)


class KubernetesExecutor(Executor):
    name = "kubernetes"

    def __init__(self, api: Any, *, namespace: str = "default", gpu_resource: str = "nvidia.com/gpu",
                 pull_policy: str = "IfNotPresent", pin: str = "nodeSelector", grace_s: float = 30.0,
                 poll_interval_s: float = 2.0, timeout: float = 10.0, checkpoint_pvc: str | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        from kubernetes import client

        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.opts = {"gpu_resource": gpu_resource, "pull_policy": pull_policy, "pin": pin,
                     "checkpoint_pvc": checkpoint_pvc}
        self.grace_s = grace_s
        self.poll_interval_s = poll_interval_s
        self.timeout = timeout
        self._mono = monotonic
        self._next_poll = 0.0
        self.runs: dict[str, _KRun] = {}
        self.logs_at: dict[str, str] = {}
        self.not_ready: set[str] = set()

    def manifest(self, run: RunSpec) -> dict[str, Any]:
        return manifest(run, namespace=self.namespace, grace_s=self.grace_s, **self.opts)  # type: ignore[arg-type]

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=self.timeout, **kw)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ExecutorError(f"kubernetes: {what}: {_api_message(exc)}") from None
        except (HTTPError, OSError) as exc:
            raise ExecutorError(f"kubernetes: {what}: API server unreachable: {exc}") from None

    def start(self, run: RunSpec) -> None:
        if run.job_id in self.runs:
            raise ExecutorError(f"job {run.job_id} still has Kubernetes Job {self.runs[run.job_id].name}")
        body = self.manifest(run)
        name = body["metadata"]["name"]
        self._call(f"create Job {name}", self.batch.create_namespaced_job, self.namespace, body)
        self.runs[run.job_id] = _KRun(run, name)
        self.logs_at[run.job_id] = run.log_path
        Path(run.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(run.log_path, "a") as fh:
            fh.write(f"--- gpufleet: attempt {run.attempt} is Kubernetes Job {self.namespace}/{name} on {run.node}"
                     f"{' (resume)' if run.resume else ''}\n")
        self._next_poll = 0.0

    def _pod(self, name: str) -> Any:
        pods = self._call(f"list pods of Job {name}", self.core.list_namespaced_pod, self.namespace,
                          label_selector=f"job-name={name}")
        items = list(pods.items) if pods is not None else []
        return items[-1] if items else None

    def _node_ready(self, node: str) -> bool | None:
        n = self._call(f"read node {node}", self.core.read_node, node)
        if n is None:
            return False
        for c in (n.status.conditions or []) if n.status else []:
            if c.type == "Ready":
                return bool(c.status == "True")
        return None

    def poll(self, now: float) -> list[ExecEvent]:
        mono = self._mono()
        if not (self.runs or self.not_ready) or mono < self._next_poll:
            return []
        self._next_poll = mono + self.poll_interval_s
        out: list[ExecEvent] = []
        try:
            nodes = {r.run.node for r in self.runs.values()} | self.not_ready
            ready = {n: self._node_ready(n) for n in nodes}
            self.not_ready = {n for n, ok in ready.items() if ok is False}
            for jid, r in list(self.runs.items()):
                out.extend(self._poll_one(jid, r, mono, ready.get(r.run.node)))
        except ExecutorError as exc:
            log.warning("%s (will retry)", exc)
        return out

    def _poll_one(self, jid: str, r: _KRun, mono: float, node_ready: bool | None) -> list[ExecEvent]:
        out: list[ExecEvent] = []
        job = self._call(f"read Job {r.name}", self.batch.read_namespaced_job, r.name, self.namespace)
        pod = self._pod(r.name) if job is not None else None
        state = pod.status.container_statuses[0].state if (
            pod is not None and pod.status and pod.status.container_statuses) else None
        if state is not None and (state.running or state.terminated) and not r.reported:
            r.reported = True
            out.append(ExecEvent(jid, r.run.attempt, "running", node=r.run.node))
        if node_ready is False and r.lost is None and job is not None:
            r.lost = f"node {r.run.node} is not Ready"
            self._delete(r, 0)
            return out
        if r.kill_at is not None and mono >= r.kill_at and job is not None:
            self._delete(r, 0)
            r.kill_at = None
        st = job.status if job is not None else None
        done = st is not None and bool((st.succeeded or 0) or (st.failed or 0))
        if job is not None and not done:
            if (r.stopping or r.lost) and pod is not None:
                r.pod_log = self._pod_log(pod) or r.pod_log
            return out
        code: int | None = None
        reason = None
        if state is not None and state.terminated is not None:
            code = int(state.terminated.exit_code)
        elif st is not None and (st.succeeded or 0):
            code = 0
        for c in (st.conditions or []) if st is not None else []:
            if c.type == "Failed" and c.status == "True" and c.reason:
                reason = f"Kubernetes Job failed: {c.reason}"
                if code is None:
                    code = 137 if c.reason == "DeadlineExceeded" else 1
        text = self._pod_log(pod) if pod is not None else None
        self._write_log(r, text or r.pod_log)
        if job is not None:
            self._delete(r, 0)
        del self.runs[jid]
        if r.lost is not None or (job is None and not r.stopping):
            out.append(ExecEvent(jid, r.run.attempt, "lost", node=r.run.node,
                                 reason=r.lost or f"Kubernetes Job {r.name} was deleted"))
        else:
            out.append(ExecEvent(jid, r.run.attempt, "exited", 143 if code is None else code, reason))
        return out

    def _pod_log(self, pod: Any) -> str | None:
        try:
            text = self._call(f"read log of {pod.metadata.name}", self.core.read_namespaced_pod_log,
                              pod.metadata.name, self.namespace)
        except ExecutorError:
            return None
        return str(text) if text else None

    @staticmethod
    def _write_log(r: _KRun, text: str | None) -> None:
        if text:
            with open(r.run.log_path, "a") as fh:
                fh.write(text if text.endswith("\n") else text + "\n")

    def _delete(self, r: _KRun, grace_s: float) -> None:
        from kubernetes import client

        body = client.V1DeleteOptions(propagation_policy="Foreground", grace_period_seconds=max(0, math.ceil(grace_s)))
        try:
            self._call(f"delete Job {r.name}", self.batch.delete_namespaced_job, r.name, self.namespace, body=body)
        except ExecutorError as exc:
            log.warning("%s", exc)
        self._next_poll = 0.0

    def stop(self, job_id: str, grace_s: float, reason: str) -> None:
        r = self.runs.get(job_id)
        if r is None or r.stopping:
            return
        r.stopping = True
        with contextlib.suppress(ExecutorError):
            pod = self._pod(r.name)
            r.pod_log = self._pod_log(pod) if pod is not None else None
        self._delete(r, grace_s)
        r.kill_at = self._mono() + grace_s + self.poll_interval_s

    def active(self, job_id: str) -> bool:
        return job_id in self.runs

    def handle(self, job_id: str) -> dict[str, Any] | None:
        r = self.runs.get(job_id)
        return {"namespace": self.namespace, "job_name": r.name} if r else None

    def reattach(self, run: RunSpec, handle: Mapping[str, Any]) -> str | None:
        """Watch a run's Job again (a Job deleted meanwhile is reported ``lost``)."""
        ns, name = handle.get("namespace"), handle.get("job_name")
        if not name:
            return "no Kubernetes Job name recorded"
        if ns and ns != self.namespace:
            return f"its Job is in namespace {ns}, this executor works in {self.namespace}"
        if run.job_id not in self.runs:
            self.runs[run.job_id] = _KRun(run, str(name))
            self.logs_at[run.job_id] = run.log_path
            self._next_poll = 0.0
        return None

    def busy_uuids(self) -> set[str]:
        return {u for r in self.runs.values() if r.stopping or r.lost for u in r.run.gpu_uuids}

    def unavailable_nodes(self, names: Any) -> set[str]:
        """Nodes whose Ready condition was not True at the last poll: the job service places nothing there."""
        return {n for n in names if n in self.not_ready}

    def logs(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        """The job's log file, and while a run is active its pod's log after it (the bytes the file gets
        when the run ends, so offsets stay valid)."""
        path = self.logs_at.get(job_id)
        if not path:
            return "", offset
        r = self.runs.get(job_id)
        live = None
        if r is not None:
            with contextlib.suppress(ExecutorError):
                pod = self._pod(r.name)
                live = self._pod_log(pod) if pod is not None else r.pod_log
        if not live:
            return read_log(path, offset)
        try:
            data = Path(path).read_bytes() + (live if live.endswith("\n") else live + "\n").encode()
        except FileNotFoundError:
            return "", offset
        chunk = data[max(0, offset):]
        return chunk.decode("utf-8", errors="replace"), max(0, offset) + len(chunk)
