"""Models: failure predictors, baselines and demand forecasters. Imports nothing from the project."""

from __future__ import annotations

from gpufleet.models.base import Model, unique_names


def failure_models() -> dict[str, type[Model]]:
    """The failure-side models (kinds "failure", "survival", "events") by unique name: their one registry,
    written out here; nothing registers itself at import. Evaluation, training and the CLI read this."""
    from gpufleet.models.baselines import BoostedTreesFailure, LogisticFailure, OperatorRules
    from gpufleet.models.event_history import EventHistoryModel, RateOnlyEvents
    from gpufleet.models.lstm_failure import LSTMFailure
    from gpufleet.models.survival import AgeOnlySurvival, CoxSurvival

    classes: tuple[type[Model], ...] = (OperatorRules, LogisticFailure, BoostedTreesFailure, LSTMFailure,
                                        RateOnlyEvents, EventHistoryModel, AgeOnlySurvival, CoxSurvival)
    return unique_names(classes)


def all_models() -> dict[str, type[Model]]:
    """Every model: the failure-side models (:func:`failure_models`) and the demand forecasters
    (:func:`gpufleet.models.forecast_base.forecasters`); both lists are explicit, and names are unique
    across them."""
    from gpufleet.models.forecast_base import forecasters

    return unique_names([*failure_models().values(), *forecasters().values()])
