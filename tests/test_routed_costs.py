"""Routed rebalancing costs: never above the single-pool charge, equal when off, per bar."""

from __future__ import annotations

import numpy as np
import pytest

from features.build import build_features
from features.sources.simulator import simulate_market
from pipelines.backtest.book import PARTS, SINGLE_POOL, StrategyBook
from pipelines.backtest.config import BacktestConfig
from pipelines.backtest.market import MarketData


@pytest.fixture(scope="module")
def market() -> MarketData:
    panel, _ = simulate_market(n_pools=24, days=20, seed=7, freq="1h")  # pairs share pools
    return MarketData.from_panel(panel, build_features(panel))


def _run(market: MarketData, routed: bool) -> StrategyBook:
    """Rebalance every 24 bars between shifting random targets over all pools."""
    rng = np.random.default_rng(0)
    book = StrategyBook(market, 5e7, None, 0.0, routed=routed)
    for e in range(48, market.n_bars - 1, 24):
        book.advance_to(e)
        w = rng.dirichlet(np.ones(len(market.pools))) * 0.9
        book.execute(e, np.where(market.available[e - 1], w, 0.0))
    book.advance_to(market.n_bars)
    return book


def test_routed_cost_never_above_single_pool(market: MarketData) -> None:
    routed, single = _run(market, True), _run(market, False)
    booked, alone = -routed.parts["slippage"], -routed.parts[SINGLE_POOL]
    traded = alone > 0
    assert traded.sum() >= 10
    assert np.all(booked <= alone + 1e-9)
    assert booked[traded].sum() < alone[traded].sum()  # pairs with several pools save
    # the first rebalance starts from the same book, so its single-pool charge is the
    # unrouted ledger's
    first = int(np.flatnonzero(traded)[0])
    assert alone[first] == pytest.approx(-single.parts["slippage"][first], rel=1e-12)
    assert SINGLE_POOL not in single.parts and list(single.parts) == PARTS


def test_pool_states_are_built_once_per_bar(market: MarketData) -> None:
    e = 100
    s = market.pool_states(e)
    assert market.pool_states(e) is s
    assert set(s.pool_id) <= set(market.pools) and len(s) > 0
    j = market.pools.index(str(s.pool_id[0]))
    assert s.tvl_usd[0] == market.tvl_prev[e, j]
    assert np.isfinite(s.reserves()[0]).all()


def test_routed_costs_are_the_default() -> None:
    assert BacktestConfig().routed_costs is True
    assert BacktestConfig(routed_costs=False).routed_costs is False


def test_routing_savings_sum_the_booked_and_single_pool_swap_costs(market: MarketData) -> None:
    import pandas as pd

    from pipelines.backtest.config import BacktestResult

    book = _run(market, True)
    periods = pd.concat([book.frame("mover", 0), _run(market, False).frame("plain", 0)])
    res = BacktestResult(metrics={}, periods=periods, weights=pd.DataFrame(),
                         preemption=pd.DataFrame(), config=BacktestConfig())
    s = res.routing_savings()
    assert s.loc["mover", "routed_usd"] == pytest.approx(-book.parts["slippage"].sum())
    assert s.loc["mover", "single_pool_usd"] == pytest.approx(-book.parts[SINGLE_POOL].sum())
    assert 0 < s.loc["mover", "saved_share"] < 1
    assert np.isnan(s.loc["plain", "single_pool_usd"])  # an unrouted book has no figure
    plain = BacktestResult(metrics={}, periods=_run(market, False).frame("plain", 0),
                           weights=pd.DataFrame(), preemption=pd.DataFrame(),
                           config=BacktestConfig(routed_costs=False))
    assert plain.routing_savings().empty
