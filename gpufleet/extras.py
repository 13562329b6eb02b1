"""Which optional extra provides which library, and the one-line error when one is missing.

The base install is the node exporter; commands that need more import their libraries lazily. When such
an import fails, ``missing_extra`` turns the ``ModuleNotFoundError`` into a :class:`MissingExtra` naming
the extra to install (``pip install 'gpufleet[analytics]'``), which the CLI prints as one line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from gpufleet.exporter.errors import ConfigError

# what each extra installs, by top-level import name (pyproject.toml [project.optional-dependencies];
# an extra that includes another lists its modules too)
_TWIN = {"numpy"}
_STORE = _TWIN | {"pyarrow"}
_ANALYTICS = _STORE | {"torch", "pandas", "sklearn", "statsmodels", "scipy", "matplotlib", "threadpoolctl", "httpx"}
_SERVICE = _ANALYTICS | {"fastapi", "starlette", "uvicorn", "sqlalchemy", "jwt", "multipart", "jinja2", "apprise",
                         "grafanalib", "alembic", "celery", "redis"}
EXTRA_MODULES: dict[str, set[str]] = {
    "twin": _TWIN, "store": _STORE, "analytics": _ANALYTICS, "service": _SERVICE,
    "amd": {"amdsmi"}, "kubernetes": {"kubernetes", "grpc", "google"}, "postgres": {"psycopg"}, "bench": {"duckdb"},
}
# the extra a part of gpufleet belongs to: decides between extras that all install the module (numpy)
EXTRA_OF_PACKAGE: dict[str, str] = {
    "gpufleet.simulator": "twin",
    "gpufleet.exporter.store": "store",
    "gpufleet.exporter.sources.amd": "amd",
    "gpufleet.analytics": "analytics",
    "gpufleet.models": "analytics",
    "gpufleet.allocator": "analytics",
    "gpufleet.api": "service",
    "gpufleet.alerting": "service",
    "gpufleet.dashboards": "service",
    "gpufleet.service": "service",
    "gpufleet.integrations.k8s": "kubernetes",
    "gpufleet.exporter.sources.podresources": "kubernetes",
}


class MissingExtra(ConfigError):
    """A command needs a library of an optional extra that is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"this command needs {module}, which the '{extra}' extra installs: "
                         f"pip install 'gpufleet[{extra}]' (or 'gpufleet[all]')")
        self.module = module
        self.extra = extra


def _importers(exc: BaseException) -> list[str]:
    """Module names of the gpufleet frames the failed import went through, innermost first."""
    names: list[str] = []
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(name, str) and name.startswith("gpufleet."):
            names.append(name)
        tb = tb.tb_next
    return names[::-1]


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The MissingExtra for a failed import of an extra's library; None for any other module.

    Where several extras install the module (numpy), the extra of the gpufleet package that imported it
    decides (the twin, the store, analytics); otherwise the smallest extra that installs it."""
    top = (exc.name or "").split(".", 1)[0]
    candidates = [e for e, mods in EXTRA_MODULES.items() if top in mods]
    if not candidates:
        return None
    for importer in _importers(exc):
        for package, extra in EXTRA_OF_PACKAGE.items():
            if (importer == package or importer.startswith(package + ".")) and extra in candidates:
                return MissingExtra(top, extra)
    return MissingExtra(top, min(candidates, key=lambda e: len(EXTRA_MODULES[e])))


@contextlib.contextmanager
def extras_required() -> Iterator[None]:
    """Re-raise an extra's failed import inside the block as MissingExtra (one line in the CLI)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        err = missing_extra(exc)
        if err is None:
            raise
        raise err from None
