"""Model registry: versioned failure-model artifacts on disk, champion / challenger, score drift.

Layout::

    <root>/versions/v0001/model.pkl   the fitted model (pickle; trusted local files only)
    <root>/versions/v0001/meta.json   name, params, seed, data span, features, horizons, metrics,
                                      gpufleet version, reference score quantiles, as_of
    <root>/champion.json              {"version": "v0001", "since": <as_of>}

A challenger replaces the champion only if it scores better on the *same* validation windows
(:meth:`Registry.challenge` scores both on the data it is given). :func:`drift` compares a score
distribution with the reference stored at training (population stability index).
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gpufleet.analytics.failure_metrics import pr_auc
from gpufleet.exporter.errors import InputError, NotFound

DRIFT_ALERT_PSI = 0.2
"""PSI above this is commonly read as a significant shift (0.1-0.2 moderate)."""


def gpufleet_version() -> str:
    try:
        from importlib.metadata import version

        return version("gpufleet")
    except Exception:  # not installed (source checkout)
        return "unknown"


@dataclass(frozen=True)
class Decision:
    promoted: bool
    champion: str | None
    reason: str
    candidate_score: float | None
    champion_score: float | None


def reference_quantiles(scores: np.ndarray, bins: int = 10) -> list[float]:
    """Inner decile edges of a score distribution (stored for the drift check)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    return [float(q) for q in np.quantile(s, np.linspace(0, 1, bins + 1)[1:-1])] if len(s) else []


def drift(reference_edges: list[float], scores: np.ndarray) -> dict[str, Any]:
    """Population stability index of ``scores`` against the reference deciles; ``alert`` above 0.2."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    edges = np.asarray(reference_edges, dtype=np.float64)
    if len(s) == 0 or len(edges) == 0:
        return {"psi": None, "alert": False, "n": len(s)}
    expected = np.full(len(edges) + 1, 1.0 / (len(edges) + 1))
    counts = np.bincount(np.searchsorted(edges, s, side="right"), minlength=len(edges) + 1)
    actual = counts / counts.sum()
    e, a = np.maximum(expected, 1e-4), np.maximum(actual, 1e-4)
    psi = float(np.sum((a - e) * np.log(a / e)))
    return {"psi": psi, "alert": psi > DRIFT_ALERT_PSI, "n": len(s)}


class Registry:
    """Versioned model artifacts in one folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "versions").mkdir(parents=True, exist_ok=True)

    # ---- versions -------------------------------------------------------------------------------
    def versions(self) -> list[str]:
        return sorted(p.name for p in (self.root / "versions").iterdir() if (p / "meta.json").exists())

    def save(self, model: Any, *, as_of: float, data_span: tuple[float, float], metrics: dict[str, Any],
             validation_scores: np.ndarray | None = None, extra: dict[str, Any] | None = None) -> str:
        """Store a fitted model; returns its version ("v0001", ...)."""
        existing = self.versions()
        n = int(existing[-1][1:]) + 1 if existing else 1
        version = f"v{n:04d}"
        folder = self.root / "versions" / version
        tmp = self.root / "versions" / f".{version}.tmp"
        tmp.mkdir(parents=True, exist_ok=False)
        with (tmp / "model.pkl").open("wb") as fh:
            pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        meta = {
            "version": version, "name": model.name, "kind": model.kind, "params": _jsonable(model.get_params()),
            "seed": getattr(model, "seed", None), "as_of": as_of, "data_span": list(data_span),
            "features": list(getattr(model, "feature_names_", ())), "horizons": list(getattr(model, "horizons_", ())),
            "metrics": _jsonable(metrics), "gpufleet_version": gpufleet_version(),
            "score_reference": reference_quantiles(validation_scores) if validation_scores is not None else [],
            **(extra or {}),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(tmp, folder)
        return version

    def meta(self, version: str) -> dict[str, Any]:
        p = self.root / "versions" / version / "meta.json"
        if not p.exists():
            raise NotFound(f"no model version {version!r} in {self.root}")
        try:
            return dict(json.loads(p.read_text()))
        except json.JSONDecodeError as exc:
            raise InputError(f"corrupt metadata: {exc.msg}", path=str(p), line=exc.lineno) from None

    def load(self, version: str | None = None) -> Any:
        """The model of ``version`` (default: the champion)."""
        version = version or self.champion()
        if version is None:
            raise NotFound(f"no champion model in {self.root} (run `gpufleet failure train` first)")
        p = self.root / "versions" / version / "model.pkl"
        if not p.exists():
            raise NotFound(f"no model version {version!r} in {self.root}")
        with p.open("rb") as fh:
            return pickle.load(fh)  # the registry folder is the operator's own: trusted

    # ---- champion / challenger -----------------------------------------------------------------
    def champion(self) -> str | None:
        p = self.root / "champion.json"
        return str(json.loads(p.read_text())["version"]) if p.exists() else None

    def retraining_due(self, as_of: float, every_s: float = 7 * 86400.0) -> bool:
        """True when there is no champion or it was trained on data older than ``every_s`` before ``as_of``
        (``serve`` calls this on its schedule and retrains on the latest sliding window when due)."""
        current = self.champion()
        if current is None:
            return True
        return float(self.meta(current).get("as_of", 0.0)) + every_s <= as_of

    def _set_champion(self, version: str, as_of: float) -> None:
        tmp = self.root / ".champion.json.tmp"
        tmp.write_text(json.dumps({"version": version, "since": as_of}))
        os.replace(tmp, self.root / "champion.json")

    def challenge(self, version: str, X: Any, mask: Any, y: np.ndarray, *, horizon: str = "24h",
                  as_of: float) -> Decision:
        """Score the candidate and the champion on the same validation windows; promote if strictly better.

        A validation window with no failure at ``horizon`` cannot tell a model from a constant: the candidate
        is then never promoted (not even as the first champion) and the champion stays."""
        candidate = self.load(version)
        current = self.champion()
        failures = _failures_at(candidate, y, horizon)
        if not failures:
            keep = f"keeping champion {current}" if current else "no champion yet"
            return Decision(False, current, f"not promoted: the validation window holds no failure within "
                            f"{horizon} ({len(y)} windows); {keep}", None, None)
        cand = _score(candidate, X, mask, y, horizon)
        if current is None:
            self._set_champion(version, as_of)
            return Decision(True, version, "no champion yet", cand, None)
        if current == version:
            return Decision(False, current, "already champion", cand, cand)
        champ = _score(self.load(current), X, mask, y, horizon)
        if cand is not None and (champ is None or cand > champ):
            self._set_champion(version, as_of)
            return Decision(True, version, f"PR-AUC {horizon} {cand:.4f} > {champ if champ is None else round(champ, 4)}",
                            cand, champ)
        return Decision(False, current, f"PR-AUC {horizon} {cand} does not beat the champion's {champ}", cand, champ)


def _failures_at(model: Any, y: np.ndarray, horizon: str) -> int:
    """Positive validation windows at ``horizon`` (the label column of the model's horizon)."""
    from gpufleet.models.failure_base import horizon_label

    labels = [horizon_label(h) for h in getattr(model, "horizons_", ())]
    if len(y) == 0 or horizon not in labels or labels.index(horizon) >= y.shape[1]:
        return 0
    return int(np.asarray(y)[:, labels.index(horizon)].sum())


def _score(model: Any, X: Any, mask: Any, y: np.ndarray, horizon: str) -> float | None:
    from gpufleet.models.failure_base import horizon_label

    proba = model.predict_proba(X, mask)
    labels = [horizon_label(h) for h in proba.horizons]
    if horizon not in labels:
        return None
    return pr_auc(y[:, labels.index(horizon)], proba.column(horizon))


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)
