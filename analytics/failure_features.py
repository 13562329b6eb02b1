"""Derived per-GPU failure features: event history, deviation from normal, and the telemetry's own health.

:func:`add_features` appends causal channels (each step sees only its own past) to a *prepared* panel
(counters already per-step increments), so every failure model and the online scorer read them like
any other field:

- ``hist:<name>_7d``: the GPU's event history, a 7-day rolling sum of error increments (correctable
  ECC, uncorrectable ECC, XIDs, row remaps, retired pages, PCIe replays, NVLink CRC errors, thermal
  throttle seconds); multi-day precursors (ECC: 1-5 days) stay in view of a 6 h window;
- ``own_dev:<gauge>``: the gauge minus the GPU's own mean over the previous 24 h (its recent normal);
- ``fleet_dev:<gauge>``: the gauge minus the median of the GPUs of the same model at that step (its
  model's fleet normal), so slow cooling loss shows against its peers whatever the load pattern;
- ``health:gap_7d`` / ``health:gap_30d``: the share of steps over the last 7 / 30 days at which the GPU
  reported no field at all (collection failed, GPU lost, being repaired), and ``health:missing``: the
  share of the fields the GPU reported over the last 7 days that are absent at this step (fields going
  missing);
  falling off the bus shows little numeric precursor but does show the monitoring degrading, and a
  recent outage (a repair) raises the hazard of a repeat fault.

Names with a ``:`` are derived, never catalogue fields; :func:`needs_features` tells the scorer to
derive them for a model that was trained with them. A step at which the GPU reported nothing stays
NaN in every derived channel too, so window selection (``min_observed``) sees the same gaps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gpufleet.analytics.datasets import DAY, Panel

HISTORY_FIELDS: dict[str, tuple[str, ...]] = {
    "ecc_corrected": ("ecc_corrected_volatile",),
    "ecc_uncorrected": ("ecc_uncorrected_volatile",),
    "xid": ("xid_errors",),
    "row_remap": ("remapped_rows_correctable", "remapped_rows_uncorrectable", "row_remap_failure"),
    "retired_pages": ("retired_pages_dbe", "retired_pages_pending"),
    "pcie_replay": ("pcie_replay",),
    "nvlink_crc": ("nvlink_crc_flit_errors",),
    "throttle_thermal": ("throttle_thermal_seconds",),
}
DEVIATION_FIELDS = ("temperature_gpu", "temperature_memory", "power_usage", "clock_sm")
HISTORY_S = 7 * DAY
OWN_NORMAL_S = DAY


def feature_names(fields: Sequence[str]) -> tuple[str, ...]:
    """The derived channel names :func:`add_features` appends for a panel with ``fields``."""
    have = set(fields)
    out = [f"hist:{k}_7d" for k, src in HISTORY_FIELDS.items() if have & set(src)]
    dev = [f for f in DEVIATION_FIELDS if f in have]
    out += [f"own_dev:{f}" for f in dev] + [f"fleet_dev:{f}" for f in dev]
    out += ["health:gap_7d", "health:gap_30d", "health:missing"]
    return tuple(out)


def needs_features(names: Sequence[str]) -> bool:
    return any(":" in n for n in names)


def _rolling_sum(v: np.ndarray, steps: int) -> np.ndarray:
    """Causal sum over the last ``steps`` steps along axis 1 (NaN counts as 0)."""
    c = np.cumsum(np.nan_to_num(v, nan=0.0), axis=1, dtype=np.float64)
    out = c.copy()
    if steps < v.shape[1]:
        out[:, steps:] = c[:, steps:] - c[:, :-steps]
    return out


def _rolling_mean(v: np.ndarray, steps: int) -> np.ndarray:
    """Causal mean of the observed values over the last ``steps`` steps (NaN where none)."""
    obs = ~np.isnan(v)
    n = _rolling_sum(obs.astype(np.float64), steps)
    s = _rolling_sum(v, steps)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


GROUPS = ("hist", "own_dev", "fleet_dev", "health")


def select(panel: Panel, groups: Sequence[str] = GROUPS) -> Panel:
    """The panel with only the derived channels of ``groups`` (raw fields always kept)."""
    keep = [j for j, f in enumerate(panel.fields) if ":" not in f or f.split(":", 1)[0] in groups]
    if len(keep) == len(panel.fields):
        return panel
    return Panel(panel.uuids, panel.times, tuple(panel.fields[j] for j in keep), panel.values[:, :, keep],
                 panel.nodes, panel.models)


def add_features(panel: Panel) -> Panel:
    """The panel with the derived channels appended (idempotent: a panel that has them is returned as is)."""
    if needs_features(panel.fields):
        return panel
    v = panel.values
    G, T, _ = v.shape
    step = panel.step
    fidx = {f: j for j, f in enumerate(panel.fields)}
    hist_steps = max(round(HISTORY_S / step), 1)
    own_steps = max(round(OWN_NORMAL_S / step), 1)
    names = feature_names(panel.fields)
    out = np.full((G, T, len(names)), np.nan, dtype=np.float32)
    any_obs = ~np.isnan(v).all(axis=2) if v.shape[2] else np.zeros((G, T), dtype=bool)
    k = 0
    for _key, src in HISTORY_FIELDS.items():
        cols = [fidx[f] for f in src if f in fidx]
        if not cols:
            continue
        inc = np.nansum(np.where(np.isnan(v[:, :, cols]), 0.0, v[:, :, cols]), axis=2)
        out[:, :, k] = np.where(any_obs, np.arcsinh(_rolling_sum(inc, hist_steps)), np.nan)
        k += 1
    dev = [f for f in DEVIATION_FIELDS if f in fidx]
    for f in dev:
        x = v[:, :, fidx[f]].astype(np.float64)
        prev = np.concatenate([np.full((G, 1), np.nan), _rolling_mean(x, own_steps)[:, :-1]], axis=1)
        out[:, :, k] = x - prev
        k += 1
    models = panel.models if len(panel.models) == G else [""] * G
    for f in dev:
        x = v[:, :, fidx[f]].astype(np.float64)
        normal = np.full_like(x, np.nan)
        for m in set(models):
            rows = np.array([i for i, mm in enumerate(models) if mm == m])
            block = x[rows]
            seen = ~np.isnan(block)
            if seen.any():
                med = np.full(T, np.nan)
                cols_seen = seen.any(axis=0)
                med[cols_seen] = np.nanmedian(block[:, cols_seen], axis=0)
                normal[rows] = med[None, :]
        out[:, :, k] = x - normal
        k += 1
    gap = (~any_obs).astype(np.float64)
    seen_steps = np.arange(1, T + 1)[None, :]
    out[:, :, k] = _rolling_sum(gap, hist_steps) / np.minimum(seen_steps, hist_steps)
    month = max(round(30 * DAY / step), 1)
    out[:, :, k + 1] = _rolling_sum(gap, month) / np.minimum(seen_steps, month)
    # fields the GPU reported in at least half of its observed steps of the last 7 days, absent now
    obs = ~np.isnan(v)
    missing = np.zeros((G, T))
    n_usual = np.zeros((G, T))
    n_any = np.maximum(_rolling_sum(any_obs.astype(np.float64), hist_steps), 1)
    for j in range(v.shape[2]):
        share = _rolling_sum(obs[:, :, j].astype(np.float64), hist_steps) / n_any
        usual = np.concatenate([np.zeros((G, 1), dtype=bool), share[:, :-1] >= 0.5], axis=1)
        n_usual += usual
        missing += usual & ~obs[:, :, j]
    out[:, :, k + 2] = missing / np.maximum(n_usual, 1)
    out[~any_obs] = np.nan  # nothing reported: nothing derived either
    values = np.concatenate([v, out], axis=2)
    return Panel(panel.uuids, panel.times, (*panel.fields, *names), values, panel.nodes, panel.models)
