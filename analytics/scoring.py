"""Online scoring: the champion scores every GPU's latest window; top contributing signals per GPU.

:func:`score_panel` builds one window per GPU ending at the panel's last step and returns
:class:`RiskScores` (risk per uuid and horizon). ``serve`` exports it as
``gpufleet_gpu_failure_risk{uuid,horizon}`` (catalogue field ``failure_risk``) via :meth:`RiskScores.samples`.

:func:`top_signals` explains a score by occlusion: each field in turn is masked out (as if the GPU
did not report it) and the drop in risk is that field's contribution. It costs one extra
prediction per field, so it runs on the GPUs asked about (the top N), not on the whole fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gpufleet.analytics.datasets import Panel, coarsen
from gpufleet.exporter.schema import Sample
from gpufleet.models.failure_base import FailureModel, Risk, horizon_label, parse_horizon


@dataclass
class RiskScores:
    """``risk[i, j]``: P(GPU ``uuids[i]`` fails within ``horizons[j]``) at time ``ts``."""

    uuids: list[str]
    horizons: tuple[float, ...]
    risk: np.ndarray
    ts: float
    model: str
    version: str | None = None
    signals: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def by_uuid(self) -> dict[str, dict[str, float]]:
        labels = [horizon_label(h) for h in self.horizons]
        return {u: {h: float(self.risk[i, j]) for j, h in enumerate(labels)} for i, u in enumerate(self.uuids)}

    def top(self, n: int = 10, horizon: str = "24h") -> list[tuple[str, float]]:
        labels = [horizon_label(h) for h in self.horizons]
        j = labels.index(horizon) if horizon in labels else 0
        order = np.argsort(-self.risk[:, j], kind="stable")[:n]
        return [(self.uuids[i], float(self.risk[i, j])) for i in order]

    def at(self, horizon: str | float) -> dict[str, Risk]:
        """Every GPU's :class:`Risk` for ``horizon`` (e.g. ``settings.serve.risk_horizon``): the model's own
        column when it has that horizon, else converted from its nearest one (constant hazard)."""
        want = parse_horizon(horizon)
        if not self.horizons or not len(self.uuids):
            return {}
        j = int(np.argmin([abs(np.log(h / want)) for h in self.horizons]))
        return {u: Risk(float(np.clip(self.risk[i, j], 0.0, 1.0)), self.horizons[j]).over(want)
                for i, u in enumerate(self.uuids)}

    def samples(self) -> list[Sample]:
        """``failure_risk`` samples labelled by horizon, ready for a sink or the history store."""
        labels = [horizon_label(h) for h in self.horizons]
        return [Sample(u, "failure_risk", float(self.risk[i, j]), self.ts, (("horizon", h),))
                for i, u in enumerate(self.uuids) for j, h in enumerate(labels)]


def model_input(model: FailureModel, panel: Panel, window: float | None) -> tuple[Panel, float]:
    """The panel on the model's input grid and the window length it reads.

    Both are the model's hyperparameters (``window_s``, ``input_step_s``); a finer panel is coarsened to
    ``input_step_s`` (counter increments summed), so the model sees the same units it learnt from. A model
    trained with derived features (``analytics.failure_features``) gets them derived from the panel.
    """
    from gpufleet.analytics.failure_features import add_features, needs_features

    if needs_features(model.feature_names_):
        panel = add_features(panel)
    step = model.input_step_s
    if step and len(panel.times) > 1 and step > panel.step * 1.5:
        panel = coarsen(panel, step)
    return panel, float(window if window is not None else model.window_s)


def score_panel(model: FailureModel, panel: Panel, *, window: float | None = None, version: str | None = None) -> RiskScores:
    """Score every GPU of a prepared panel on its latest window (one batch, one model for the fleet).

    ``window`` defaults to the model's ``window_s``.
    """
    panel, window = model_input(model, panel, window)
    X, mask = latest_windows(align_fields(panel, tuple(model.feature_names_)), window)
    proba = model.predict_proba(X, mask).proba if len(X) else np.zeros((0, len(model.horizons_)))
    ts = float(panel.times[-1]) if len(panel.times) else 0.0
    return RiskScores(list(panel.uuids), tuple(model.horizons_), proba, ts, model.name, version)


def latest_windows(panel: Panel, window: float) -> tuple[np.ndarray, np.ndarray]:
    """(X, mask) of every GPU's last ``window`` seconds; front-padded (masked) when history is shorter."""
    steps = max(round(window / panel.step), 1)
    v = panel.values[:, -steps:, :]
    mask = ~np.isnan(v)
    X = np.where(mask, v, np.float32(0.0))
    if v.shape[1] < steps:
        pad = ((0, 0), (steps - v.shape[1], 0), (0, 0))
        X, mask = np.pad(X, pad), np.pad(mask, pad)
    return X, mask.view(np.uint8)


def align_fields(panel: Panel, fields: tuple[str, ...]) -> Panel:
    """Reorder / extend a panel to the model's fields (a field the fleet lacks stays masked)."""
    if panel.fields == fields:
        return panel
    values = np.full((*panel.values.shape[:2], len(fields)), np.nan, dtype=np.float32)
    for j, f in enumerate(fields):
        if f in panel.fields:
            values[:, :, j] = panel.values[:, :, panel.fields.index(f)]
    return Panel(panel.uuids, panel.times, fields, values, panel.nodes, panel.models)


def top_signals(model: Any, X: np.ndarray, mask: np.ndarray, *, horizon: str = "24h",
                k: int = 3) -> list[list[tuple[str, float]]]:
    """Per window: the ``k`` fields whose removal lowers the risk most, with the risk they add."""
    X = np.asarray(X)
    mask = np.asarray(mask)
    base = model.predict_proba(X, mask).column(horizon)
    contrib = np.zeros((len(X), X.shape[2]))
    for f in range(X.shape[2]):
        if not mask[:, :, f].any():
            continue
        m2 = mask.copy()
        m2[:, :, f] = 0
        X2 = X.copy()
        X2[:, :, f] = 0
        contrib[:, f] = base - model.predict_proba(X2, m2).column(horizon)
    names = model.feature_names_
    out = []
    for i in range(len(X)):
        order = np.argsort(-contrib[i], kind="stable")[:k]
        out.append([(names[f], float(contrib[i, f])) for f in order if contrib[i, f] > 0])
    return out


def explain_top(model: FailureModel, panel: Panel, scores: RiskScores, *, n: int = 10, horizon: str = "24h",
                window: float | None = None, k: int = 3) -> RiskScores:
    """Fill ``scores.signals`` for the ``n`` riskiest GPUs."""
    panel, window = model_input(model, panel, window)
    panel = align_fields(panel, tuple(model.feature_names_))
    top = [u for u, _ in scores.top(n, horizon)]
    X, mask = latest_windows(panel, window)
    rows = np.array([panel.uuids.index(u) for u in top], dtype=np.int64)
    if len(rows):
        sig = top_signals(model, X[rows], mask[rows], horizon=horizon, k=k)
        scores.signals = dict(zip(top, sig, strict=True))
    return scores
