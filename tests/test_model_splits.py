"""Held-out rows inside model fits are purged: no training label window reaches a held-out row.

The models see a feature ``period`` equal to each row's period index, so the rows a model
actually trained on and the rows it calibrated / validated on can be read back from what reached
LightGBM and the GRU, independently of how the split is coded.
"""

from __future__ import annotations

from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import torch

from models.cv import inner_splits
from models.gbm import LightGBMQuantile
from models.sequence import GRUForecaster, GRUStress, _Net
from models.splits import purged_tail_split
from models.stress import LightGBMStress


def _frame(n_periods: int = 160, n_pools: int = 3, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Hourly rows of a few pools with a signal feature, the period index, and a stress label."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n_periods, freq="1h", tz="UTC")
    pools = [f"p{i}" for i in range(n_pools)]
    X = pd.DataFrame({"pool_id": np.repeat(pools, n_periods), "timestamp": np.tile(ts, n_pools),
                      "period": np.tile(np.arange(n_periods), n_pools).astype(float)})
    X["signal"] = rng.normal(size=len(X))
    y = pd.Series((X["signal"] + rng.normal(scale=0.5, size=len(X)) > 0.8).astype(float))
    return X, y


def _assert_purged(train_periods: np.ndarray, tail_periods: np.ndarray, h: int) -> None:
    """Every training label window (t, t + h] ends before the first held-out period."""
    assert len(train_periods) and len(tail_periods)
    first_tail = tail_periods.min()
    assert train_periods.max() + h < first_tail, (train_periods.max(), h, first_tail)
    assert set(train_periods.tolist()).isdisjoint(tail_periods.tolist())


@pytest.mark.parametrize("h", [0, 1, 6, 24])
@pytest.mark.parametrize("frac", [0.15, 0.2, 0.5])
def test_purged_tail_split_is_tight(h: int, frac: float) -> None:
    codes = np.repeat(np.arange(200), 3)
    head, tail = purged_tail_split(codes, frac, h)
    _assert_purged(codes[head], codes[tail], h)
    first = codes[tail].min()
    assert codes[head].max() == first - h - 1  # only the h periods in between are dropped
    assert abs(tail.mean() - frac) < 0.02
    assert not (head & tail).any()


def test_purged_tail_split_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tail_frac"):
        purged_tail_split(np.arange(10), 1.0, 2)
    with pytest.raises(ValueError, match="horizon_periods"):
        purged_tail_split(np.arange(10), 0.2, -1)


class _Recorder:
    """Proxy of a LightGBM booster that records the ``period`` of rows it predicts."""

    def __init__(self, booster: lgb.Booster, seen: list[np.ndarray]) -> None:
        self.booster, self.seen = booster, seen

    def predict(self, M: pd.DataFrame, *a: Any, **k: Any) -> np.ndarray:
        self.seen.append(M["period"].to_numpy())
        return np.asarray(self.booster.predict(M, *a, **k))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.booster, name)  # best_iteration, feature_name, ...


@pytest.mark.parametrize("h", [6, 24])
@pytest.mark.parametrize("which", ["stress", "quantile"])
def test_inner_walk_forward_folds_are_purged(h: int, which: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every inner booster is scored only on periods after its label windows ended; the
    final booster is refit on the whole window."""
    X, y = _frame(n_periods=240)
    trained: list[np.ndarray] = []
    predicted: list[np.ndarray] = []
    real_train = lgb.train

    def train(params: dict[str, Any], ds: lgb.Dataset, *a: Any, **k: Any) -> _Recorder:
        trained.append(cast(pd.DataFrame, ds.data)["period"].to_numpy())
        return _Recorder(real_train(params, ds, *a, **k), predicted)

    monkeypatch.setattr(lgb, "train", train)
    if which == "stress":
        m: LightGBMStress | LightGBMQuantile = LightGBMStress(n_estimators=20, horizon_periods=h)
    else:
        m = LightGBMQuantile(n_estimators=20, horizon_periods=h)
        y = X["signal"].abs() + 0.1
    m.fit(X, y)
    n_inner = len(m.grid) * len(inner_splits(X["timestamp"], 3, h))  # boosters (not the linear)
    assert n_inner >= len(m.grid), "inner folds must have run for the check to mean anything"
    final = 0 if getattr(m, "linear_", None) else 1  # the stress model may pick its linear model
    assert len(trained) == n_inner + final and len(predicted) == n_inner
    for fit_periods, scored_periods in zip(trained[:n_inner], predicted, strict=True):
        _assert_purged(fit_periods, scored_periods, h)
    if final:
        assert np.array_equal(np.sort(np.unique(trained[-1])), np.arange(240))  # refit sees all


@pytest.mark.parametrize("h", [0, 3, 24])
def test_inner_splits_purge_and_cover_the_tail(h: int) -> None:
    ts = pd.Series(np.repeat(pd.date_range("2024-01-01", periods=200, freq="1h"), 2))
    folds = inner_splits(ts, 3, h)
    codes = pd.factorize(ts, sort=True)[0]
    assert len(folds) == 3
    for train, valid in folds:
        _assert_purged(codes[train], codes[valid], h)
    covered = np.unique(np.concatenate([codes[v] for _, v in folds]))
    assert np.array_equal(covered, np.arange(100, 200))  # the last half, each period once


@pytest.mark.parametrize("cls", [GRUForecaster, GRUStress])
@pytest.mark.parametrize("h", [6, 24])
def test_gru_validation_tail_is_purged(cls: type[GRUForecaster], h: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _frame()
    if cls is GRUForecaster:
        y = X["signal"].abs() + 0.1
    calls: list[tuple[bool, np.ndarray]] = []
    real_forward = _Net.forward

    def forward(self: _Net, x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        calls.append((self.training, x[:, -1, :].detach().numpy().copy()))
        return real_forward(self, x, pool)

    monkeypatch.setattr(_Net, "forward", forward)
    m = cls(lookback=4, hidden=8, epochs=2, patience=5, batch_size=64, valid_frac=0.2,
            horizon_periods=h)
    m.fit(X, y)
    j = m.columns_.index("period")

    def periods(train_mode: bool) -> np.ndarray:
        rows = [v for t, v in calls if t == train_mode]
        return np.rint(np.vstack(rows)[:, j] * m.std_[j] + m.mean_[j]).astype(int)

    _assert_purged(periods(True), periods(False), h)
    assert periods(False).min() == 128  # the validation tail: last 20% of 160 periods


def test_gru_with_no_room_for_the_purge_says_so() -> None:
    X, y = _frame(n_periods=20)
    with pytest.raises(ValueError, match="no training rows end 24 periods before"):
        GRUStress(lookback=4, hidden=8, epochs=1, horizon_periods=24).fit(X, y)
