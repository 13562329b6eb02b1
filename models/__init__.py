"""Models: failure predictors, baselines and demand forecasters. Imports nothing from the project."""

from __future__ import annotations

import importlib
import pkgutil

from gpufleet.models.base import REGISTRY, Model


def all_models() -> dict[str, type[Model]]:
    """Import every module of this package (models register at import) and return the registry."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(REGISTRY)
