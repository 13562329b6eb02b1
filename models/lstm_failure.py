"""LSTM failure predictor: a multivariate telemetry window in, a calibrated probability per horizon out.

Pipeline, all learnt in ``fit`` from the training windows only:

1. per-feature transform: ``asinh`` for spiky non-negative fields (error counters), then z-scores
   from observed values (masked values never enter the statistics);
2. the window (e.g. 360 one-minute steps) is pooled into ``blocks`` blocks (or ``pool``-step blocks); each carries the
   masked mean, the masked max and the observed fraction of every field, so the network sees
   *missingness* as an input instead of fake zeros;
3. a one-layer LSTM over the blocks, its last state plus the window's mean block into a linear head
   with one logit per horizon;
4. loss: binary cross-entropy with a per-horizon positive weight (class imbalance), early stopping
   and isotonic / Platt calibration on the last ``calibration_fraction`` of the (time-ordered)
   training windows.

Deterministic on CPU for a given ``seed`` (seeded torch generator, fixed batch order).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from gpufleet.models.failure_base import Calibrator, FailureModel, FailureProba, calibration_split


def _pool(Z: np.ndarray, mf: np.ndarray, pool: int) -> np.ndarray:
    """(n, steps, f) -> (n, blocks, 3f): masked mean, masked max, observed fraction per block.

    ``Z`` is already 0 where ``mf`` (the float mask) is 0.
    """
    n, steps, f = Z.shape
    blocks = -(-steps // pool)
    pad = blocks * pool - steps
    if pad:
        Z = np.concatenate([np.zeros((n, pad, f), Z.dtype), Z], axis=1)
        mf = np.concatenate([np.zeros((n, pad, f), mf.dtype), mf], axis=1)
    Zb = Z.reshape(n, blocks, pool, f)
    Mb = mf.reshape(n, blocks, pool, f)
    cnt = Mb.sum(axis=2)
    mean = Zb.sum(axis=2) / np.maximum(cnt, 1.0)
    mx = np.where(Mb > 0, Zb, np.float32(-np.inf)).max(axis=2)
    mx = np.where(cnt > 0, mx, np.float32(0.0))
    return np.concatenate([mean, mx, cnt / np.float32(pool)], axis=2).astype(np.float32, copy=False)


class LSTMFailure(FailureModel):
    """One-layer LSTM over pooled, masked telemetry windows; calibrated probability per horizon."""

    name = "lstm_failure"

    def __init__(self, hidden: int = 32, pool: int | None = None, blocks: int = 12, epochs: int = 15, batch_size: int = 256,
                 lr: float = 3e-3, max_pos_weight: float = 20.0, windows_per_epoch: int | None = None,
                 calibration_fraction: float = 0.2, threads: int | None = 1, features: str = "absolute",
                 window_s: float = 6 * 3600.0, input_step_s: float | None = None, seed: int = 0) -> None:
        self.hidden = hidden
        self.window_s = window_s
        self.input_step_s = input_step_s
        self.features = features
        self.pool = pool
        self.blocks = blocks
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_pos_weight = max_pos_weight
        self.windows_per_epoch = windows_per_epoch
        self.calibration_fraction = calibration_fraction
        self.threads = threads
        self.seed = seed

    # ---- preprocessing -------------------------------------------------------------------------
    def _relative_fields(self, f: int) -> np.ndarray:
        names = getattr(self, "feature_names_", ())
        return np.array([n in RELATIVE_FIELDS for n in names] if len(names) == f else [False] * f, dtype=bool)

    def _fit_transform_stats(self, X: Any, mask: Any, rows: np.ndarray, rng: np.random.Generator) -> None:
        sample = rows if len(rows) <= 4000 else np.sort(rng.choice(rows, 4000, replace=False))
        xs, ms = np.asarray(X[sample], dtype=np.float64), np.asarray(mask[sample]) > 0
        f = xs.shape[2]
        transfer = self.features == "transfer"
        self.relative_ = self._relative_fields(f) if transfer else np.zeros(f, dtype=bool)
        if transfer:  # deviations from the window's own mean for level-like gauges
            xs = xs - _masked_window_mean(xs, ms) * self.relative_
        self.asinh_ = np.zeros(f, dtype=bool)
        self.mean_ = np.zeros(f, dtype=np.float32)
        self.std_ = np.ones(f, dtype=np.float32)
        for j in range(f):
            v = xs[:, :, j][ms[:, :, j]]
            if v.size == 0:
                continue
            p50, p99 = np.percentile(v, [50, 99])
            if v.min() >= 0 and p99 > 20 * (abs(p50) + 1e-6):
                self.asinh_[j] = True
                v = np.arcsinh(v)
            if transfer and not self.relative_[j]:
                # error counts and states: scaled, not centred, so "field absent" and "no errors" both read 0
                self.std_[j] = float(np.sqrt((v ** 2).mean())) or 1.0
                continue
            self.mean_[j] = float(v.mean())
            self.std_[j] = float(v.std()) or 1.0

    def _n_inputs(self, f: int) -> int:
        return 2 * f + 1 if self.features == "transfer" else 3 * f

    def _inputs(self, X: np.ndarray, mask: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        m = np.asarray(mask) > 0
        mf = m.astype(np.float32)
        transfer = self.features == "transfer"
        if transfer and self.relative_.any():
            X = X - (_masked_window_mean(X, m) * self.relative_).astype(np.float32)
        Z = X - self.mean_
        for j in np.flatnonzero(self.asinh_):
            Z[:, :, j] = np.arcsinh(X[:, :, j]) - self.mean_[j]
        Z /= self.std_
        np.clip(Z, -10, 10, out=Z)
        Z *= mf  # masked steps carry 0, whatever value sat under the mask
        pooled = _pool(Z, mf, self.pool_)
        if not transfer:
            return pooled
        # which fields a GPU reports tells its model, not its health: keep one observed fraction (any field)
        f = X.shape[2]
        seen = mf.max(axis=2, keepdims=True)
        frac = _pool(np.zeros_like(seen), seen, self.pool_)[:, :, 2:3]
        return np.concatenate([pooled[:, :, :2 * f], frac], axis=2)

    # ---- network ---------------------------------------------------------------------------------
    def _build(self, n_in: int, n_out: int) -> Any:
        import torch
        from torch import nn

        hidden = self.hidden

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(n_in, hidden, batch_first=True)
                self.head = nn.Linear(hidden + n_in, n_out)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out, _ = self.lstm(x)
                return self.head(torch.cat([out[:, -1, :], x.mean(dim=1)], dim=1))

        return Net()

    def _logits(self, X: Any, mask: Any, rows: np.ndarray | None = None, chunk: int = 4096) -> np.ndarray:
        import torch

        n = X.shape[0] if rows is None else len(rows)
        idx = np.arange(n) if rows is None else rows
        out = []
        self.net_.eval()
        with torch.inference_mode():
            for i in range(0, n, chunk):
                r = idx[i:i + chunk]
                xb = self._inputs(np.asarray(X[r]), np.asarray(mask[r]))
                out.append(self.net_(torch.from_numpy(xb)).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.horizons_)), np.float32)

    # ---- contract ----------------------------------------------------------------------------------
    def fit(self, X: Any, mask: Any, y: np.ndarray, *, feature_names: Sequence[str],
            horizons: Sequence[float]) -> LSTMFailure:
        self._remember(X, mask, y, feature_names, horizons)
        with _torch_threads(self.threads):
            return self._fit(X, mask, y)

    def _fit(self, X: Any, mask: Any, y: np.ndarray) -> LSTMFailure:
        import torch

        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        fit_rows, cal_rows = calibration_split(X.shape[0], self.calibration_fraction)
        # pooling: ``pool`` steps per block, or as many as make ``blocks`` blocks of the window
        self.pool_ = self.pool or max(-(-X.shape[1] // self.blocks), 1)
        self._fit_transform_stats(X, mask, fit_rows, rng)
        n_in = self._n_inputs(X.shape[2])
        self.net_ = self._build(n_in, y.shape[1])
        yt = y.astype(np.float32)
        pos = yt[fit_rows].sum(axis=0)
        neg = len(fit_rows) - pos
        pos_weight = torch.tensor(np.clip(np.sqrt(neg / np.maximum(pos, 1)), 1.0, self.max_pos_weight),
                                  dtype=torch.float32)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        best: tuple[float, dict[str, Any]] | None = None
        # early stopping looks at (a seeded sample of) the calibration slice
        stop_rows = cal_rows
        if self.windows_per_epoch and len(cal_rows) > self.windows_per_epoch // 2:
            stop_rows = np.sort(rng.choice(cal_rows, self.windows_per_epoch // 2, replace=False))
        self.history_: list[dict[str, float]] = []
        for epoch in range(self.epochs):
            self.net_.train()
            order = fit_rows[torch.randperm(len(fit_rows), generator=gen).numpy()]
            if self.windows_per_epoch and len(order) > self.windows_per_epoch:
                order = order[: self.windows_per_epoch]
            total = 0.0
            for i in range(0, len(order), self.batch_size):
                r = np.sort(order[i:i + self.batch_size])
                xb = torch.from_numpy(self._inputs(np.asarray(X[r]), np.asarray(mask[r])))
                loss = loss_fn(self.net_(xb), torch.from_numpy(yt[r]))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net_.parameters(), 1.0)
                opt.step()
                total += float(loss.detach()) * len(r)
            rec = {"epoch": float(epoch), "train_loss": total / max(len(order), 1), "windows": float(len(order))}
            if len(cal_rows):
                with torch.inference_mode():
                    val_logits = torch.from_numpy(self._logits(X, mask, stop_rows))
                    rec["val_loss"] = float(loss_fn(val_logits, torch.from_numpy(yt[stop_rows])))
                if best is None or rec["val_loss"] < best[0]:
                    best = (rec["val_loss"], {k: v.clone() for k, v in self.net_.state_dict().items()})
            self.history_.append(rec)
        if best is not None:
            self.net_.load_state_dict(best[1])
        raw_cal = _sigmoid(self._logits(X, mask, cal_rows)) if len(cal_rows) else np.zeros((0, y.shape[1]))
        self.calibrators_ = [Calibrator().fit(raw_cal[:, j], y[cal_rows, j]) for j in range(y.shape[1])]
        return self

    def raw_scores(self, X: Any, mask: Any) -> np.ndarray:
        self.check_fitted()
        with _torch_threads(self.threads):
            return _sigmoid(self._logits(X, mask))

    def predict_proba(self, X: Any, mask: Any) -> FailureProba:
        raw = self.raw_scores(X, mask)
        return self._result(np.stack([c.transform(raw[:, j]) for j, c in enumerate(self.calibrators_)], axis=1))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if "net_" in state:  # store weights, not the local class
            state["net_"] = {k: v.clone() for k, v in state["net_"].state_dict().items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.get("net_")
        state.setdefault("features", "absolute")  # models saved before the option existed
        self.__dict__.update(state)
        if weights is not None:
            self.net_ = self._build(self._n_inputs(len(self.feature_names_)), len(self.horizons_))
            self.net_.load_state_dict(weights)


RELATIVE_FIELDS = ("temperature_gpu", "temperature_memory", "power_usage", "util_gpu", "clock_sm", "pcie_link_width")
"""Level-like gauges whose absolute value mostly says which GPU model it is; read as deviations
from the window's own mean (``features="transfer"``) so the model carries over to another fleet."""


def _masked_window_mean(X: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(n, 1, f): the mean of each field over the observed steps of its window (0 when none)."""
    cnt = m.sum(axis=1, keepdims=True)
    return np.where(m, X, 0).sum(axis=1, keepdims=True) / np.maximum(cnt, 1)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (small recurrent batches are fastest on one), then restore."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
