"""A small LSTM forecaster (torch) with direct multi-step quantile outputs.

Input: the last ``season`` steps (scaled by the series' mean), averaged into at most ``max_inputs`` blocks,
plus the time-of-day phase as sin/cos.  Output: ``season`` future steps x the quantile levels, trained with
the pinball loss over windows cut from the training series.  ``update(y)`` re-reads the latest window
without retraining, so a rolling backtest can fit once and move the origin.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gpufleet.models.forecast_base import (
    DEFAULT_QUANTILES,
    FloatArray,
    Forecast,
    Forecaster,
    fill_missing,
    sort_quantiles,
)


class LSTMForecaster(Forecaster):
    """LSTM -> linear head (horizon x quantiles), pinball loss; CPU-sized."""

    name = "lstm"
    fast = False

    def __init__(self, season: str | int = "1d", hidden: int = 16, epochs: int = 25, max_inputs: int = 24,
                 lr: float = 0.01, max_windows: int = 256, seed: int = 0) -> None:
        self.season = season
        self.hidden = hidden
        self.epochs = epochs
        self.max_inputs = max_inputs
        self.lr = lr
        self.max_windows = max_windows
        self.seed = seed

    def _inputs(self, y: FloatArray, ends: np.ndarray) -> np.ndarray:
        s, b = self.season_, self.block_
        x = np.stack([y[e - s:e] for e in ends]) / self.scale_
        x = x.reshape(len(ends), s // b, b).mean(axis=2)
        phase = ((ends[:, None] - s + np.arange(0, s, b)[None, :]) % s) / s * 2 * np.pi
        return np.stack([x, np.sin(phase), np.cos(phase)], axis=2).astype(np.float32)

    def _fit(self, y: FloatArray) -> None:
        import torch

        s = self.season_
        self.block_ = max(1, int(np.ceil(s / self.max_inputs)))
        while s % self.block_:
            self.block_ += 1
        self.scale_ = float(np.mean(np.abs(y))) or 1.0
        self.levels_ = list(DEFAULT_QUANTILES)
        ends = np.arange(s, len(y) - s + 1)
        if len(ends) == 0:
            raise ValueError(f"{self.name}: need at least two seasons of data")
        rng = np.random.default_rng(self.seed)
        if len(ends) > self.max_windows:
            ends = np.sort(rng.choice(ends, self.max_windows, replace=False))
        x = torch.from_numpy(self._inputs(y, ends))
        t = torch.from_numpy((np.stack([y[e:e + s] for e in ends]) / self.scale_).astype(np.float32))
        torch.manual_seed(self.seed)
        self.net_ = _Net(self.hidden, s, len(self.levels_))
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        q = torch.tensor(self.levels_, dtype=torch.float32)
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 64):
                idx = perm[i:i + 64]
                pred = self.net_(x[idx])  # (b, s, k)
                diff = t[idx].unsqueeze(-1) - pred
                loss = torch.maximum(q * diff, (q - 1) * diff).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()

    def update(self, y: Any, timestamps: Any = None) -> LSTMForecaster:
        """Move the forecast origin to the end of ``y`` without retraining."""
        self.check_fitted()
        self.y_ = fill_missing(np.asarray(y, dtype=float).ravel(), self.season_)
        if timestamps is not None and len(timestamps):
            import pandas as pd

            self.start_ = pd.DatetimeIndex(timestamps)[-1] + pd.Timedelta(self.freq_)
        return self

    def _point(self, horizon: int) -> FloatArray:  # pragma: no cover - predict() is overridden
        return self.predict(horizon).point

    def predict(self, horizon: int, quantiles: tuple[float, ...] = DEFAULT_QUANTILES) -> Forecast:
        import torch

        self.check_fitted()
        s = self.season_
        y = self.y_.copy()
        outs: list[np.ndarray] = []
        done = 0
        while done < horizon:  # iterate one season at a time, feeding back the median
            x = torch.from_numpy(self._inputs(y, np.array([len(y)])))
            with torch.no_grad():
                out = self.net_(x)[0].numpy() * self.scale_  # (s, k)
            outs.append(out)
            y = np.concatenate([y, out[:, self.levels_.index(0.5)]])
            done += s
        m = np.concatenate(outs)[:horizon]
        qd = sort_quantiles({lv: np.maximum(m[:, i].astype(float), 0.0) for i, lv in enumerate(self.levels_)})
        extra = [round(float(q), 6) for q in quantiles if round(float(q), 6) not in qd]
        if extra:
            tmp = Forecast(self.name, qd[0.5], qd, self.freq_)
            for q in extra:
                qd[q] = tmp.quantile(q)
            qd = sort_quantiles(qd)
        return Forecast(self.name, qd[0.5], qd, self.freq_, self.start_, path_correlation=0.9)


def _Net(hidden: int, horizon: int, k: int) -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(3, hidden, batch_first=True)
            self.head = nn.Linear(hidden + 1, horizon * k)
            self.horizon, self.k = horizon, k

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, _ = self.lstm(x)
            z = torch.cat([h[:, -1, :], x[:, -1:, 0]], dim=1)
            base = x[:, :, 0].mean(dim=1, keepdim=True).unsqueeze(-1)
            out: torch.Tensor = self.head(z).view(-1, self.horizon, self.k) + base
            return out

    return Net()
