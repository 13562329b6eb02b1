"""Grafana provisioning files (datasource and dashboard provider) and the HTTP push to Grafana's API.

``cp -r OUT /etc/grafana/provisioning`` is all a user does with the files: Grafana reads
``datasources/gpufleet.yaml`` and ``dashboards/gpufleet.yaml``, and the provider points at the JSON files
copied beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml
from gpufleet.exporter.errors import BackendUnavailable, ConfigError, Conflict, NotFound

PROVISIONED_PATH = "/etc/grafana/provisioning/dashboards"


def write_provisioning(out: Path, prometheus_url: str = "http://localhost:9090",
                       folder: str = "gpufleet") -> list[Path]:
    ds_dir = out / "datasources"
    ds_dir.mkdir(parents=True, exist_ok=True)
    ds = {
        "apiVersion": 1,
        "datasources": [{
            "name": "Prometheus", "type": "prometheus", "uid": "gpufleet-prometheus", "access": "proxy",
            "url": prometheus_url, "isDefault": True, "editable": True,
            "jsonData": {"timeInterval": "10s"},
        }],
    }
    provider = {
        "apiVersion": 1,
        "providers": [{
            "name": "gpufleet", "orgId": 1, "folder": folder, "type": "file", "disableDeletion": False,
            "allowUiUpdates": False, "updateIntervalSeconds": 60,
            "options": {"path": PROVISIONED_PATH, "foldersFromFilesStructure": False},
        }],
    }
    ds_path = ds_dir / "gpufleet.yaml"
    ds_path.write_text(yaml.safe_dump(ds, sort_keys=True), encoding="utf-8")
    prov_path = out / "dashboards" / "gpufleet.yaml"
    prov_path.parent.mkdir(parents=True, exist_ok=True)
    prov_path.write_text(yaml.safe_dump(provider, sort_keys=True), encoding="utf-8")
    return [ds_path, prov_path]


class GrafanaClient:
    """The few Grafana HTTP API calls a dashboard push needs (folders, dashboards/db)."""

    def __init__(self, url: str, token: str, timeout: float = 10.0, verify: bool = True) -> None:
        if not token:
            raise ConfigError("a Grafana service-account token is required (--token)")
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, timeout=timeout, verify=verify,
                                   headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})

    def _request(self, method: str, path: str, allow_404: bool = False, **kw: Any) -> httpx.Response:
        try:
            r = self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"Grafana at {self.url} is unreachable: {exc}") from None
        if r.status_code in (401, 403):
            raise ConfigError(f"Grafana at {self.url} refused the token ({r.status_code} on {method} {path}): "
                              f"{_message(r)}; use a service-account token with the Editor role")
        if r.status_code == 404 and not allow_404:
            raise NotFound(f"Grafana at {self.url} answered 404 on {method} {path}: {_message(r)}; is the URL "
                           "Grafana's root (e.g. http://grafana:3000)?")
        return r

    def ensure_folder(self, title: str, uid: str) -> str:
        r = self._request("GET", f"/api/folders/{uid}", allow_404=True)
        if r.status_code == 200:
            return str(r.json()["uid"])
        r = self._request("POST", "/api/folders", json={"uid": uid, "title": title})
        if r.status_code in (200, 201):
            return str(r.json()["uid"])
        if r.status_code in (409, 412):  # created concurrently
            return uid
        raise BackendUnavailable(f"Grafana could not create folder {title!r}: {r.status_code} {_message(r)}")

    def push(self, model: dict[str, Any], folder_uid: str, overwrite: bool = True,
             message: str = "gpufleet dashboards build") -> dict[str, Any]:
        body = {"dashboard": {**model, "id": None}, "folderUid": folder_uid, "overwrite": overwrite,
                "message": message}
        r = self._request("POST", "/api/dashboards/db", json=body)
        if r.status_code == 412:
            raise Conflict(f"dashboard {model.get('uid')!r} changed in Grafana since (version-mismatch / "
                           f"name-exists): {_message(r)}; push with overwrite to replace it")
        if r.status_code != 200:
            raise BackendUnavailable(f"Grafana rejected dashboard {model.get('uid')!r}: {r.status_code} {_message(r)}")
        return dict(r.json())

    def close(self) -> None:
        self.client.close()


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message", r.text))
    except ValueError:
        return r.text[:200]


CONFIGMAP_FILE = "grafana-dashboards.yaml"
SIDECAR_LABEL = {"grafana_dashboard": "1"}  # what the Grafana sidecar (kube-prometheus-stack) watches for


def dashboard_configmaps(models: dict[str, dict[str, Any]], *, namespace: str = "gpufleet",
                         folder: str = "gpufleet") -> list[dict[str, Any]]:
    """One ConfigMap per dashboard, labelled for the Grafana sidecar (``grafana_dashboard: "1"``) and
    annotated with the folder (``grafana_folder``, the sidecar's folder annotation)."""
    import json

    out = []
    for key, model in models.items():
        out.append({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"gpufleet-dashboard-{key}", "namespace": namespace,
                         "labels": {**SIDECAR_LABEL, "app.kubernetes.io/part-of": "gpufleet"},
                         "annotations": {"grafana_folder": folder}},
            "data": {f"gpufleet-{key}.json": json.dumps(model, sort_keys=True, separators=(",", ":"))},
        })
    return out


def write_configmaps(out: Path, models: dict[str, dict[str, Any]], **kw: Any) -> Path:
    """Write every dashboard ConfigMap into ``<out>/grafana-dashboards.yaml`` (one YAML stream)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / CONFIGMAP_FILE
    header = "# Generated by `gpufleet dashboards build --format configmap`; do not edit by hand.\n"
    path.write_text(header + yaml.safe_dump_all(dashboard_configmaps(models, **kw), sort_keys=False, width=200),
                    encoding="utf-8")
    return path
