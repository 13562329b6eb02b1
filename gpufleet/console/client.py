"""The console's API client: the API's routes called in-process (no socket) with the user's token and
the browser's address as the client, so the API's rate limits and audit see the real source."""

from __future__ import annotations

import time
from typing import Any

import httpx
from starlette.types import ASGIApp

from gpufleet.exporter.errors import GpufleetError


class ApiCallError(GpufleetError):
    """A non-2xx answer from the API: its status and the problem's detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem_detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:500] or r.reason_phrase
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or ""
        errs = body.get("errors")
        if isinstance(errs, list) and errs:
            parts = []
            for e in errs[:5]:
                if isinstance(e, dict):
                    loc = ".".join(str(x) for x in e.get("loc", []) if x != "body")
                    parts.append(f"{loc}: {e.get('msg', '')}" if loc else str(e.get("msg", "")))
            if parts:
                detail = f"{detail} ({'; '.join(parts)})" if detail else "; ".join(parts)
        return str(detail) or r.reason_phrase
    return str(body)[:500]


class ApiClient:
    def __init__(self, api: ASGIApp, client_host: str) -> None:
        self.transport = httpx.ASGITransport(app=api, client=(client_host, 0))

    async def call(self, method: str, path: str, *, token: str | None = None, params: dict[str, Any] | None = None,
                   json: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(transport=self.transport, base_url="http://api") as c:
            return await c.request(method, path, params={k: v for k, v in (params or {}).items() if v not in (None, "")},
                                   json=json, headers=headers)

    async def login(self, username: str, password: str) -> tuple[dict[str, Any], float]:
        r = await self.call("POST", "/auth/login", json={"username": username, "password": password})
        if r.status_code != 200:
            raise ApiCallError(r.status_code, problem_detail(r))
        body = r.json()
        return body, time.time() + float(body.get("expires_in", 300))
