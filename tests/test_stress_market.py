"""The market-wide stress model: causal cross-pool inputs, inner-fold choice, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.base import PROB_COLUMN, ForecastError
from models.forecasts import load_forecaster
from models.stress_market import MarketStress, market_inputs


def _panel(days: int = 400, pools: int = 5, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Pools whose stress follows a market-wide volatility regime known at t."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2022-01-01", periods=days, freq="1D", tz="UTC")
    regime = (np.sin(np.arange(days) / 15) > 0.6).astype(float)  # shared calm / stormy spells
    rows = []
    for p in range(pools):
        rv = 0.5 + regime + rng.normal(0, 0.1, days).clip(-0.3)
        stress = (rng.random(days) < 0.03 + 0.5 * regime).astype(float)
        rows.append(pd.DataFrame({
            "pool_id": f"p{p}", "timestamp": ts, "rv_7d": rv,
            "rv_7d_vs_own_median": np.log(rv / 0.7), "rv_ratio_7d_30d": rv / 0.8,
            "max_move_7d": rv * 0.1 + rng.normal(0, 0.01, days),
            "ret_24h": rng.normal(0, 0.02, days) * (1 + regime),
            "lp_netflow_7d": rng.normal(0, 0.05, days), "y": stress}))
    f = pd.concat(rows).sort_values(["timestamp", "pool_id"]).reset_index(drop=True)
    return f.drop(columns="y"), f["y"]


def test_market_inputs_at_t_read_only_the_rows_at_t() -> None:
    X, _ = _panel()
    a = market_inputs(X)
    later = X["timestamp"] > X["timestamp"].iloc[len(X) // 2]
    Y = X.copy()
    Y.loc[later, ["rv_7d", "rv_7d_vs_own_median", "ret_24h", "max_move_7d"]] *= 3
    b = market_inputs(Y)
    pd.testing.assert_frame_equal(a.loc[~later], b.loc[~later])
    one = X[X["timestamp"] == X["timestamp"].iloc[0]]
    pd.testing.assert_frame_equal(market_inputs(one), a.loc[one.index])


def test_market_model_ranks_a_shared_regime_and_keeps_its_state(tmp_path: Path) -> None:
    X, y = _panel()
    cut = X["timestamp"] < X["timestamp"].iloc[0] + pd.Timedelta(days=300)
    m = MarketStress(horizon_periods=7)
    m.fit(X[cut], y[cut])
    assert len(m.inner_losses_) == 3 and np.isfinite(m.inner_losses_).all()
    p = m.predict(X[~cut])[PROB_COLUMN].to_numpy()
    yt = y[~cut].to_numpy()
    assert p[yt == 1].mean() > 2 * p[yt == 0].mean()
    back = load_forecaster(m.save(tmp_path / "m"))
    np.testing.assert_allclose(back.predict(X[~cut])[PROB_COLUMN].to_numpy(), p)


def test_market_model_names_a_missing_column() -> None:
    X, y = _panel(days=60)
    with pytest.raises(ForecastError, match="max_move_7d"):
        MarketStress().fit(X.drop(columns="max_move_7d"), y)
