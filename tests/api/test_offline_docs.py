"""``/docs`` and ``/redoc`` work on an air-gapped cluster: headless Chromium, with every host name but the
loopback address unresolvable (no CDN can be reached), renders Swagger UI's operation list from the assets
``serve`` itself ships."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.api.app import create_app
from gpufleet.api.server import ApiServer
from tests.api.conftest import make_api
from tests.servers import require_binary


@pytest.fixture
def live_api(tmp_path: Path) -> Iterator[str]:
    api = make_api(tmp_path)
    server = ApiServer(create_app(api.ctx), "127.0.0.1:0")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        api.ctx.db.dispose()


def rendered(url: str, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran, in a Chromium that can reach nothing but 127.0.0.1."""
    chromium = require_binary("chromium")
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # the network is off for every name
         "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_swagger_ui_lists_the_operations_with_the_network_off(live_api: str, tmp_path: Path) -> None:
    dom = rendered(f"{live_api}/docs", tmp_path)
    assert "/docs/assets/swagger-ui-bundle.js" in dom  # the page loads the bundle from serve, not a CDN
    assert "cdn.jsdelivr.net" not in dom and "unpkg.com" not in dom
    # Swagger UI rendered the OpenAPI document: operation blocks with the API's paths
    assert dom.count('class="opblock ') >= 5, dom[:3000]
    for path in ("/gpus", "/auth/login", "/jobs"):
        assert f'data-path="{path}"' in dom


def test_redoc_renders_with_the_network_off(live_api: str, tmp_path: Path) -> None:
    dom = rendered(f"{live_api}/redoc", tmp_path)
    assert "/docs/assets/redoc.standalone.js" in dom
    assert "fonts.googleapis.com" not in dom
    assert "/auth/login" in dom and "operation/" in dom, dom[:3000]
