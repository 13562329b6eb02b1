"""``/docs`` (Swagger UI) and ``/redoc`` from assets installed with the package, never a CDN.

The JavaScript / CSS come from the ``fastapi-offline`` distribution's ``static`` folder (Swagger UI's
``swagger-ui-bundle.js`` and ``swagger-ui.css``, ReDoc's ``redoc.standalone.js``), served by Starlette's
StaticFiles under ``/docs/assets``; FastAPI's own page builders get those URLs, so an air-gapped cluster
shows the same pages. ReDoc's Google fonts are left out for the same reason.
"""

from __future__ import annotations

import logging
from importlib.util import find_spec
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("gpufleet.api")

ASSETS = "/docs/assets"
NEEDED = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")


def assets_dir() -> Path | None:
    """The installed folder holding Swagger UI's and ReDoc's files, or None when the package is missing."""
    spec = find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if all((folder / f).is_file() for f in NEEDED) else None


def install(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> bool:
    """Serve the docs pages and their assets on ``app`` (created with ``docs_url=None, redoc_url=None``).

    Returns False (and logs one warning) when the assets are not installed: the pages are then off
    rather than pointing at a CDN.
    """
    folder = assets_dir()
    if folder is None:
        log.warning("Swagger UI / ReDoc assets not installed (pip install 'gpufleet[service]'): "
                    "%s and %s are off", docs_url, redoc_url)
        return False
    app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")
    oauth_redirect = f"{docs_url}/oauth2-redirect"

    def _root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"), title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png", oauth2_redirect_url=root + oauth_redirect)

    async def redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(openapi_url=root + (app.openapi_url or "/openapi.json"), title=f"{app.title} - API",
                              redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSETS}/favicon.png", with_google_fonts=False)

    # plain Starlette routes (not API operations): outside the OpenAPI schema and the permission matrix
    app.add_route(docs_url, swagger, include_in_schema=False)
    app.add_route(oauth_redirect, redirect, include_in_schema=False)
    app.add_route(redoc_url, redoc, include_in_schema=False)
    return True
