"""The one contract every gpufleet model follows (after scikit-learn and statsforecast).

- hyperparameters (and ``seed``) are set in ``__init__`` and only stored there;
- ``fit(...)`` returns ``self`` and sets fitted state in attributes ending with ``_``;
- ``predict(...)`` returns a typed result object, never a bare tuple;
- every model class has a unique ``name`` and is registered with :func:`register`;
- training and evaluation take an ``as_of`` time from the caller, never the wall clock.

Failure predictors extend :class:`models.failure_base.FailureModel`, demand forecasters
:class:`models.forecast_base.Forecaster`. This package imports nothing from the rest of gpufleet.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, ClassVar


class NotFittedError(RuntimeError):
    """predict() was called before fit()."""


class Model:
    """Base class: parameters, fitted-state check, registry membership."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # "failure" | "forecast" | "survival" | "events"

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters given to ``__init__`` (read back from attributes of the same name)."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def is_fitted(self) -> bool:
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{self.name}: call fit() before predict()")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def unique_names(classes: Iterable[type[Model]]) -> dict[str, type[Model]]:
    """``{name: class}`` of an explicit model list; names must be unique and non-empty."""
    out: dict[str, type[Model]] = {}
    for cls in classes:
        if not cls.name or cls.name in out:
            raise ValueError(f"{cls.__qualname__}: model names must be unique and non-empty, got {cls.name!r}")
        out[cls.name] = cls
    return out
