"""Decision layer fitted walk-forward: what is chosen at t depends only on data before t."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from features.build import build_features
from features.sources.simulator import simulate_market
from models.allocation import AllocatorConfig
from pipelines.backtest.decisions import DecisionFitter
from pipelines.backtest.market import MarketData
from pipelines.backtest.providers import BaselineProvider


def _garble(m: MarketData, after: int, seed: int = 1) -> MarketData:
    """A copy whose bars after `after` carry random fees, prices and TVL."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in ("fees", "lp_ratio", "hodl_ratio", "tvl", "tvl_prev", "active_prev",
                 "in_range", "liq_per_value"):
        a = getattr(m, name).copy()
        a[after + 1:] = rng.uniform(0.5, 2.0, a[after + 1:].shape) * np.nanmean(a)
        out[name] = a
    return dataclasses.replace(m, **out)


def test_fitted_parameters_use_only_the_past() -> None:
    """Garbling every bar after the refit time leaves the fitted parameters unchanged."""
    panel, _ = simulate_market(n_pools=5, days=20, seed=2, freq="1h")
    fs = build_features(panel)
    market = MarketData.from_panel(panel, fs)
    prov = BaselineProvider(market, market.horizon_bars)
    bars = list(range(24 * 5, 24 * 15, 24))
    now = bars[-1]
    prov.fit(fs, market.times[now])
    cfg = AllocatorConfig(horizon_years=1 / 365, cost_horizons=4.0)
    chosen = []
    for m in (market, _garble(market, now)):
        fit = DecisionFitter(cfg, every=len(bars) - 1, lookback=8, trials=4, seed=0)
        for b in bars[:-1]:
            fit.record(b, prov.predict_pools(fs, market.times[b]))
        fit.maybe_fit(m, len(bars) - 1, now)
        assert len(fit.fits) == 1
        chosen.append(fit.fits[0])
    # equal up to solver round-off (the interior-point solver is not bit-reproducible)
    assert chosen[0]["validation_lp_alpha"] == pytest.approx(chosen[1]["validation_lp_alpha"],
                                                             rel=1e-8)
    for key in ("cost_horizons", "stress_loss", "max_deploy"):
        assert chosen[0][key] == pytest.approx(chosen[1][key], rel=1e-8)
    # and the garbling did change the future, so the test could fail
    assert not np.allclose(market.fees[now + 1:], _garble(market, now).fees[now + 1:])
