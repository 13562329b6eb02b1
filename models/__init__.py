"""Models: failure predictors, baselines and demand forecasters. Imports nothing from the project."""

from __future__ import annotations

import importlib
import pkgutil

from gpufleet.models.base import REGISTRY, Model


def failure_models() -> dict[str, type[Model]]:
    """The failure-side models (kinds "failure", "survival", "events") by unique name: their one registry,
    written out here; nothing registers itself at import. Evaluation, training and the CLI read this."""
    from gpufleet.models.baselines import BoostedTreesFailure, LogisticFailure, OperatorRules
    from gpufleet.models.event_history import EventHistoryModel, RateOnlyEvents
    from gpufleet.models.lstm_failure import LSTMFailure
    from gpufleet.models.survival import AgeOnlySurvival, CoxSurvival

    classes: tuple[type[Model], ...] = (OperatorRules, LogisticFailure, BoostedTreesFailure, LSTMFailure,
                                        RateOnlyEvents, EventHistoryModel, AgeOnlySurvival, CoxSurvival)
    out: dict[str, type[Model]] = {}
    for cls in classes:
        if not cls.name or cls.name in out:
            raise ValueError(f"{cls.__qualname__}: model names must be unique and non-empty, got {cls.name!r}")
        out[cls.name] = cls
    return out


def all_models() -> dict[str, type[Model]]:
    """Every model: the failure-side registry (:func:`failure_models`) and the forecasters, which still
    register at import (see models.base.register)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return {**REGISTRY, **failure_models()}
