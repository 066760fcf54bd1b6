"""PyTorch GRU over each pool's recent feature sequence, with a pool embedding.

Trained with pinball loss on the three quantiles (or BCE for the stress task), deterministic
for a seed, early stopping on the last slice of training time (the training rows before it
purged by the label horizon). Each row's sequence is the
previous ``lookback`` rows of the same pool taken from the X passed in (zero-padded before the
pool's first row), so predicting the last row of a pool needs its recent history in X.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from features.schema import POOL_ID, TIMESTAMP
from models.base import PROB_COLUMN, QUANTILE_COLUMNS, QUANTILES, ForecastError
from models.gbm import CATEGORICALS, NON_FEATURES
from models.quantile import QuantileForecaster
from models.splits import purged_tail_split
from models.threads import n_threads

__all__ = ["GRUForecaster", "GRUStress"]


class _Net(nn.Module):
    def __init__(self, n_in: int, n_pools: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.gru = nn.GRU(n_in, hidden, batch_first=True)
        self.emb = nn.Embedding(n_pools + 1, 4)
        self.head = nn.Sequential(nn.Linear(hidden + 4, hidden), nn.ReLU(),
                                  nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        return self.head(torch.cat([h[-1], self.emb(pool)], dim=1))


def _pinball(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    q = torch.tensor(QUANTILES, dtype=pred.dtype)
    d = y[:, None] - pred
    return torch.maximum(q * d, (q - 1) * d).mean()


class _Windows:
    """(rows, lookback, features) windows as a feature table and row indices into it."""

    def __init__(self, F: np.ndarray, idx: np.ndarray) -> None:
        self.F, self.idx = F, idx

    def __len__(self) -> int:
        return len(self.idx)

    def take(self, rows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The windows of the given rows as a float32 tensor."""
        return torch.from_numpy(self.F[self.idx[np.asarray(rows)]])


class GRUForecaster(QuantileForecaster):
    """GRU quantile forecaster (pinball loss) over the last ``lookback`` periods of a pool.

    It gives no separate mean: its ``mean`` column is the median.

    Early stopping watches the last ``valid_frac`` of training time; the rows it trains on end
    ``horizon_periods`` before it, so no training label window (t, t + h] reaches a validation row.
    """

    kind = "torch"
    task = "quantile"

    def __init__(self, lookback: int = 24, hidden: int = 32, epochs: int = 8,
                 batch_size: int = 256, lr: float = 2e-3, max_samples: int = 20000,
                 patience: int = 2, seed: int = 0, valid_frac: float = 0.15,
                 horizon_periods: int = 24) -> None:
        self._params = {"lookback": lookback, "hidden": hidden, "epochs": epochs,
                        "batch_size": batch_size, "lr": lr, "max_samples": max_samples,
                        "patience": patience, "seed": seed, "valid_frac": valid_frac,
                        "horizon_periods": horizon_periods}
        self.lookback, self.hidden, self.epochs = lookback, hidden, epochs
        self.batch_size, self.lr, self.max_samples = batch_size, lr, max_samples
        self.patience, self.seed = patience, seed
        self.valid_frac, self.horizon_periods = valid_frac, horizon_periods

    # -- data -----------------------------------------------------------------------------
    def _sequences(self, X: pd.DataFrame) -> tuple[_Windows, np.ndarray, np.ndarray]:
        """Each row's lookback window (gathered lazily), pool codes, time codes; X's order."""
        order = np.lexsort((pd.DatetimeIndex(X[TIMESTAMP]).asi8, X[POOL_ID].to_numpy()))
        Xs = X.iloc[order]
        F = Xs[self.columns_].to_numpy(np.float32)
        F = (F - self.mean_) / self.std_
        F = np.nan_to_num(F, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        F = np.vstack([F, np.zeros((1, F.shape[1]), np.float32)])  # padding row
        pool = Xs[POOL_ID].to_numpy()
        start = np.r_[True, pool[1:] != pool[:-1]]
        first = np.maximum.accumulate(np.where(start, np.arange(len(pool)), 0))
        offs = np.arange(self.lookback - 1, -1, -1)
        idx = np.arange(len(pool))[:, None] - offs[None, :]
        idx = np.where(idx >= first[:, None], idx, len(pool))
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        codes = np.array([self.pools_.get(str(p), 0) for p in X[POOL_ID]], dtype=np.int64)
        return _Windows(F, idx[inv]), codes, pd.factorize(X[TIMESTAMP], sort=True)[0]

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        torch.manual_seed(self.seed)
        torch.set_num_threads(n_threads())
        rng = np.random.default_rng(self.seed)
        self.columns_ = [c for c in X.columns
                         if c not in NON_FEATURES and c not in CATEGORICALS
                         and pd.api.types.is_numeric_dtype(X[c])]
        A = X[self.columns_].to_numpy(float)
        with warnings.catch_warnings():  # all-NaN columns (e.g. no stablecoin leg) are expected
            warnings.simplefilter("ignore", RuntimeWarning)
            self.mean_ = np.nan_to_num(np.nanmean(A, axis=0)).astype(np.float32)
            self.std_ = np.nan_to_num(np.nanstd(A, axis=0), nan=1.0).astype(np.float32)
        self.std_[self.std_ < 1e-9] = 1.0
        self.pools_ = {p: i + 1 for i, p in enumerate(sorted(X[POOL_ID].astype(str).unique()))}
        yv = y.to_numpy(float)
        self.y_mean_, self.y_std_ = float(np.mean(yv)), float(np.std(yv) or 1.0)
        # sequences need the history rows too: build them on the full X, then pick fit rows
        win, codes_all, tcode_all = self._sequences(X_all)
        pos = X_all.index.get_indexer(X.index)
        seq, codes, tcode = _Windows(win.F, win.idx[pos]), codes_all[pos], tcode_all[pos]
        target = (yv - self.y_mean_) / self.y_std_ if self.task == "quantile" else yv
        head, tail = purged_tail_split(tcode, self.valid_frac, self.horizon_periods)
        tr, va = np.flatnonzero(head), np.flatnonzero(tail)
        if len(tr) == 0:
            raise ForecastError(
                f"{self.kind}: no training rows end {self.horizon_periods} periods before the "
                f"last {self.valid_frac:.0%} of time held out for early stopping; "
                f"need a longer training window")
        if len(tr) > self.max_samples:
            tr = np.sort(rng.choice(tr, self.max_samples, replace=False))
        if len(va) > self.max_samples // 4:
            va = np.sort(rng.choice(va, self.max_samples // 4, replace=False))
        n_out = 3 if self.task == "quantile" else 1
        net = _Net(len(self.columns_), len(self.pools_), self.hidden, n_out)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        ps, ys = torch.from_numpy(codes), torch.tensor(target, dtype=torch.float32)
        best, best_state, bad = np.inf, None, 0
        gen = torch.Generator().manual_seed(self.seed)
        self.history_: list[float] = []
        for _ in range(self.epochs):
            net.train()
            perm = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)]
            for b in range(0, len(perm), self.batch_size):
                i = perm[b:b + self.batch_size]
                opt.zero_grad()
                loss = self._loss(net(seq.take(i), ps[i]), ys[i])
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                vi = torch.from_numpy(va if len(va) else tr[-256:])
                v = float(self._loss(net(seq.take(vi), ps[vi]), ys[vi]))
            self.history_.append(v)
            if v < best - 1e-6:
                best, bad = v, 0
                best_state = {k: t.clone() for k, t in net.state_dict().items()}
            else:
                bad += 1
                if bad >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        self.net_ = net.eval()
        if self.is_classifier and len(va):
            # scores on the held-out tail, which no training row's label window reaches: the
            # out-of-sample reference of the alarm threshold (models.alarm)
            with torch.no_grad():
                vi = torch.from_numpy(va)
                logits = net(seq.take(vi), ps[vi]).numpy()[:, 0]
            self.inner_scores_: np.ndarray | None = 1 / (1 + np.exp(-logits.astype(float)))

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _pinball(out, y)

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        seq, codes, _ = self._sequences(X)
        outs = []
        with torch.no_grad():
            for b in range(0, len(seq), 4096):
                rows = np.arange(b, min(b + 4096, len(seq)))
                outs.append(self.net_(seq.take(rows), torch.from_numpy(codes[rows])).numpy())
        return np.vstack(outs) if outs else np.zeros((0, 3))

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        out = self._raw(X) * self.y_std_ + self.y_mean_
        return pd.DataFrame(out, columns=QUANTILE_COLUMNS)

    # -- persistence ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"columns": self.columns_, "mean": self.mean_.tolist(), "std": self.std_.tolist(),
                "pools": self.pools_, "y_mean": self.y_mean_, "y_std": self.y_std_}

    def _save_native(self, path: Path) -> None:
        torch.save(self.net_.state_dict(), path / "state_dict.pt")

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        self.columns_ = state["columns"]
        self.mean_ = np.asarray(state["mean"], np.float32)
        self.std_ = np.asarray(state["std"], np.float32)
        self.pools_ = state["pools"]
        self.y_mean_, self.y_std_ = state["y_mean"], state["y_std"]
        n_out = 3 if self.task == "quantile" else 1
        net = _Net(len(self.columns_), len(self.pools_), self.hidden, n_out)
        net.load_state_dict(torch.load(path / "state_dict.pt", weights_only=True))
        self.net_ = net.eval()


class GRUStress(GRUForecaster):
    """GRU stress classifier (binary cross-entropy) on the same sequences."""

    kind = "torch_stress"
    task = "binary"
    is_classifier = True

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(out[:, 0], y)

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        logits = self._raw(X)[:, 0]
        return pd.DataFrame({PROB_COLUMN: 1 / (1 + np.exp(-logits))})
