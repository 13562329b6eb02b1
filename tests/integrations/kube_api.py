"""A loopback stand-in for the few Kubernetes API server endpoints node remediation uses.

GET /api/v1/nodes (with ``labelSelector`` ``k=v[,k=v]``), GET /api/v1/nodes/{name} and PATCH
/api/v1/nodes/{name} with ``application/merge-patch+json`` (RFC 7386) or
``application/strategic-merge-patch+json`` (maps merge, null deletes; the node fields patched here,
``taints``, have no merge key so lists are replaced whole, as the API server does for them). A
``json-patch+json`` body that is not a list is refused with 400, as the real API server refuses it.
Errors are ``Status`` objects. Every request is recorded for assertions.

GET /api/v1/pods (every namespace, ``fieldSelector=status.phase=X``) lists pods for the pending-demand
read-out; :meth:`KubeAPI.add_pod` adds a user's pod.

For the Kubernetes executor also batch/v1 Jobs (create, read, delete) in a namespace, one pod per Job
(list by ``labelSelector``, read its log); the tests play kubelet and job controller (:meth:`KubeAPI.run_pod`,
:meth:`KubeAPI.finish`, :meth:`KubeAPI.set_ready`).
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
            "code": code}


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
         unschedulable: bool = False, gpus: int = 8, ready: bool = True) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "1",
                         "labels": {"kubernetes.io/hostname": name, **(labels or {})}, "annotations": {}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": str(gpus)},
                       "capacity": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class KubeAPI:
    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes = {n["metadata"]["name"]: n for n in nodes}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        """batch/v1 Jobs by (namespace, name); each gets one pod (``job-name`` label), driven by the tests."""
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.pod_logs: dict[str, str] = {}
        self.requests: list[tuple[str, str, str, Any]] = []
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "message": message, "reason": reason, "code": code})

            def do_GET(self) -> None:
                u = urlparse(self.path)
                with api.lock:
                    api.requests.append(("GET", u.path, "", None))
                    if "/namespaces/" in u.path:
                        return self._reply(*api.namespaced("GET", u, None))
                    if u.path == "/api/v1/pods":  # every namespace, by fieldSelector status.phase=X
                        return self._send(200, api.list_pods(parse_qs(u.query)))
                    if u.path == "/api/v1/nodes":
                        sel = parse_qs(u.query).get("labelSelector", [""])[0]
                        want = dict(p.split("=", 1) for p in sel.split(",") if "=" in p)
                        items = [n for n in api.nodes.values()
                                 if all(n["metadata"]["labels"].get(k) == v for k, v in want.items())]
                        return self._send(200, {"apiVersion": "v1", "kind": "NodeList",
                                                "metadata": {"resourceVersion": "1"}, "items": items})
                    name = u.path.removeprefix("/api/v1/nodes/")
                    if u.path.startswith("/api/v1/nodes/") and name in api.nodes:
                        return self._send(200, api.nodes[name])
                return self._status(404, "NotFound", f'nodes "{name}" not found')

            def _reply(self, code: int, doc: Any) -> None:
                if isinstance(doc, str):  # a pod log
                    data = doc.encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self._send(code, doc)

            def _body(self) -> Any:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")

            def do_POST(self) -> None:
                u = urlparse(self.path)
                body = self._body()
                with api.lock:
                    api.requests.append(("POST", u.path, self.headers.get("Content-Type", ""), body))
                    return self._reply(*api.namespaced("POST", u, body))

            def do_DELETE(self) -> None:
                u = urlparse(self.path)
                body = self._body()
                with api.lock:
                    api.requests.append(("DELETE", u.path, "", body))
                    return self._reply(*api.namespaced("DELETE", u, body))

            def do_PATCH(self) -> None:
                u = urlparse(self.path)
                ctype = self.headers.get("Content-Type", "")
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
                name = u.path.removeprefix("/api/v1/nodes/")
                with api.lock:
                    api.requests.append(("PATCH", u.path, ctype, body))
                    if name not in api.nodes:
                        return self._status(404, "NotFound", f'nodes "{name}" not found')
                    if ctype.startswith("application/json-patch+json") and not isinstance(body, list):
                        return self._status(400, "BadRequest", "json: cannot unmarshal object into Go value "
                                            "of type []handlers.jsonPatchOp")
                    if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                        return self._status(415, "UnsupportedMediaType", f"the body of the request was in an "
                                            f"unknown format - accepted media types include: ... ({ctype})")
                    n = merge_patch(api.nodes[name], body)
                    n["metadata"]["resourceVersion"] = str(int(n["metadata"]["resourceVersion"]) + 1)
                    api.nodes[name] = n
                    return self._send(200, n)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # -- batch/v1 Jobs and their pods (the job controller and kubelet are the test's hands) ------------------
    def namespaced(self, method: str, u: Any, body: Any) -> tuple[int, Any]:
        m = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?", u.path)
        if m:
            ns, name = m.groups()
            if method == "POST" and name is None:
                name = body["metadata"]["name"]
                if (ns, name) in self.jobs:
                    return 409, _status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
                job = copy.deepcopy(body)
                job["metadata"].update(namespace=ns, uid=f"uid-{name}", resourceVersion="1")
                job["status"] = {"active": 1}
                self.jobs[(ns, name)] = job
                labels = {**job["spec"]["template"]["metadata"].get("labels", {}), "job-name": name}
                self.pods[(ns, f"{name}-pod")] = {
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-pod", "namespace": ns,
                                                                    "labels": labels},
                    "spec": copy.deepcopy(job["spec"]["template"]["spec"]),
                    "status": {"phase": "Pending", "containerStatuses": [
                        {"name": "job", "ready": False, "restartCount": 0, "image": "", "imageID": "",
                         "state": {"waiting": {"reason": "ContainerCreating"}}}]}}
                return 201, job
            if name is not None and (ns, name) not in self.jobs:
                return 404, _status(404, "NotFound", f'jobs.batch "{name}" not found')
            if method == "GET" and name is not None:
                return 200, self.jobs[(ns, name)]
            if method == "DELETE" and name is not None:
                job = self.jobs.pop((ns, name))
                for key in [k for k, p in self.pods.items() if p["metadata"]["labels"].get("job-name") == name]:
                    del self.pods[key]
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                             "details": {"name": name, "kind": "jobs", "uid": job["metadata"]["uid"]}}
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)(/log)?)?", u.path)
        if m and method == "GET":
            ns, name, want_log = m.groups()
            if name is None:
                sel = parse_qs(u.query).get("labelSelector", [""])[0]
                want = dict(p.split("=", 1) for p in sel.split(",") if "=" in p)
                items = [p for (pns, _), p in self.pods.items() if pns == ns
                         and all(p["metadata"]["labels"].get(k) == v for k, v in want.items())]
                return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
            if (ns, name) in self.pods and want_log:
                return 200, self.pod_logs.get(name, "")
        return 404, _status(404, "NotFound", f"{u.path} not found")

    def list_pods(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """GET /api/v1/pods: ``fieldSelector`` ``status.phase=X`` (the one field the tests select on) and
        ``labelSelector`` ``k=v[,k=v]``."""
        fields = dict(p.split("=", 1) for p in query.get("fieldSelector", [""])[0].split(",") if "=" in p)
        want = dict(p.split("=", 1) for p in query.get("labelSelector", [""])[0].split(",") if "=" in p)
        if set(fields) - {"status.phase"}:
            return _status(400, "BadRequest", f"field label not supported: {sorted(set(fields) - {'status.phase'})}")
        items = [p for p in self.pods.values()
                 if p["status"].get("phase") == fields.get("status.phase", p["status"].get("phase"))
                 and all(p["metadata"].get("labels", {}).get(k) == v for k, v in want.items())]
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}

    def add_pod(self, name: str, gpus: dict[str, str], *, ns: str = "default", phase: str = "Pending",
                node_selector: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                node_name: str | None = None, init_gpus: dict[str, str] | None = None) -> None:
        """A pod as a user's controller made it: one container asking for ``gpus`` (resource -> quantity,
        as requests and limits), optionally an init container asking for ``init_gpus``."""
        def container(n: str, want: dict[str, str]) -> dict[str, Any]:
            return {"name": n, "image": "busybox", "resources": {"requests": dict(want), "limits": dict(want)}}
        spec: dict[str, Any] = {"containers": [container("main", gpus)]}
        if init_gpus:
            spec["initContainers"] = [container("init", init_gpus)]
        if node_selector:
            spec["nodeSelector"] = dict(node_selector)
        if node_name:
            spec["nodeName"] = node_name
        with self.lock:
            self.pods[(ns, name)] = {"apiVersion": "v1", "kind": "Pod",
                                     "metadata": {"name": name, "namespace": ns, "labels": dict(labels or {})},
                                     "spec": spec, "status": {"phase": phase}}

    def run_pod(self, job: str, ns: str = "default") -> None:
        """The kubelet started the Job's container."""
        with self.lock:
            pod = self.pods[(ns, f"{job}-pod")]
            pod["status"]["phase"] = "Running"
            pod["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}

    def finish(self, job: str, exit_code: int, ns: str = "default", log: str = "") -> None:
        """The container exited: the pod and the Job say so, as the kubelet and the job controller would."""
        with self.lock:
            pod = self.pods[(ns, f"{job}-pod")]
            pod["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            pod["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": exit_code}}
            self.pod_logs[f"{job}-pod"] = log
            cond = "Complete" if exit_code == 0 else "Failed"
            self.jobs[(ns, job)]["status"] = {
                **({"succeeded": 1} if exit_code == 0 else {"failed": 1}),
                "conditions": [{"type": cond, "status": "True",
                                **({} if exit_code == 0 else {"reason": "BackoffLimitExceeded"})}]}

    def set_ready(self, name: str, ready: bool) -> None:
        with self.lock:
            self.nodes[name]["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]

    def api_client(self) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    def patches(self) -> list[tuple[str, str, str, Any]]:
        return [r for r in self.requests if r[0] == "PATCH"]

    def core_v1(self) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.CoreV1Api(client.ApiClient(cfg))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
