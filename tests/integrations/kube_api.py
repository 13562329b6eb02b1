"""A loopback stand-in for the few Kubernetes API server endpoints node remediation uses.

GET /api/v1/nodes (with ``labelSelector`` ``k=v[,k=v]``), GET /api/v1/nodes/{name} and PATCH
/api/v1/nodes/{name} with ``application/merge-patch+json`` (RFC 7386) or
``application/strategic-merge-patch+json`` (maps merge, null deletes; the node fields patched here,
``taints``, have no merge key so lists are replaced whole, as the API server does for them). A
``json-patch+json`` body that is not a list is refused with 400, as the real API server refuses it.
Errors are ``Status`` objects. Every request is recorded for assertions.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


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
