"""The zap cost floor lies under what the ledger charges, on simulated and hand-built pools."""

from __future__ import annotations

import numpy as np
import pytest

from features.build import build_features
from features.sources.simulator import simulate_market
from models.economics.costs import pair_swap_terms, rebalance_cost
from models.routing import routed_zap_costs
from models.routing.bounds import zap_cost_floor
from models.routing.graph import PoolStates
from pipelines.backtest.book import StrategyBook
from pipelines.backtest.market import MarketData


@pytest.fixture(scope="module")
def market() -> MarketData:
    panel, _ = simulate_market(n_pools=24, days=20, seed=7, freq="1h")
    return MarketData.from_panel(panel, build_features(panel))


def test_floor_under_the_ledger_charge_on_simulated_pools(market: MarketData) -> None:
    rng = np.random.default_rng(4)
    book = StrategyBook(market, 1e7, None, 0.0, routed=True)
    t0, t1, ch = (market.names(c) for c in ("token0", "token1", "chain"))
    tight = []
    for e in range(30, market.n_bars, 7):
        size = 10 ** rng.uniform(0, 9.5, len(market.pools))
        delta = rng.choice([-1.0, 1.0], len(market.pools)) * size
        _, fee, impact = book.pool_costs(e, delta)
        charged = book.routed_swap_costs(e, delta, fee + impact)
        floor = zap_cost_floor(market.pool_states(e), market.pools, t0, t1, ch,
                               market.swap_depth(e), market.fee_tier).cost(0.5 * delta)
        ok = np.isfinite(charged)
        assert np.all(floor[ok] <= charged[ok] * (1 + 1e-9) + 1e-9)
        tight.append(np.median(floor[ok] / np.maximum(charged[ok], 1e-12)))
    assert np.median(tight) > 0.5  # a floor, but not a useless one


def _states(protocol: list[str], w0: list[float], fee: list[float], tvl: list[float],
            price: list[float]) -> PoolStates:
    n = len(protocol)
    p = np.array(price, float)
    return PoolStates(
        pool_id=np.array([f"p{i}" for i in range(n)], object),
        protocol=np.array(protocol, object), chain=np.full(n, "ethereum", object),
        token0=np.full(n, "WETH", object), token1=np.full(n, "USDC", object),
        fee_tier=np.array(fee, float), price=p, tvl_usd=np.array(tvl, float),
        token0_usd=p * 1.0, token1_usd=np.ones(n), active_usd=np.array(tvl, float) * 3.0,
        liquidity=np.full(n, np.nan), weight0=np.array(w0, float),
        depth_source=np.full(n, "test", object), timestamp=np.full(n, np.datetime64("NaT")))


@pytest.mark.parametrize("w0", [0.2, 0.5, 0.8])
def test_floor_under_the_charge_with_weighted_and_stable_pools(w0: float) -> None:
    st = _states(["uniswap_v2", "weighted", "uniswap_v3", "stableswap"], [0.5, w0, 0.5, 0.5],
                 [0.003, 0.001, 0.0005, 0.0004], [2e6, 5e6, 1e6, 3e5],
                 [2000.0, 2003.0, 1998.0, 2001.0])
    depth, ids = st.depth_usd(), st.pool_id.tolist()
    t0, t1, ch = st.token0.astype(str), st.token1.astype(str), st.chain.astype(str)
    floor = zap_cost_floor(st, ids, t0, t1, ch, depth, st.fee_tier)
    for size in 10 ** np.linspace(0, 8, 33):
        for sign in (-1.0, 1.0):
            delta = np.full(len(ids), sign * size)
            _, fee, impact = rebalance_cost(delta, depth, st.fee_tier)
            charged = routed_zap_costs(st, ids, t0, t1, ch, delta, fee + impact)
            lb = floor.cost(0.5 * delta)
            assert np.all(lb <= charged * (1 + 1e-9) + 1e-9), (size, sign, lb, charged)


def test_one_pool_floor_is_its_own_cost_less_the_fee_on_impact() -> None:
    st = _states(["uniswap_v2"], [0.5], [0.003], [2e6], [2000.0])
    floor = zap_cost_floor(st, ["p0"], ["WETH"], ["USDC"], ["ethereum"], st.depth_usd(),
                           st.fee_tier)
    assert floor.lin[0] == pytest.approx(0.003)
    assert floor.quad[0] == pytest.approx(0.997 ** 2)
    assert floor.depth[0] == pytest.approx(1e6)


def test_pair_terms_sum_depth_and_take_the_lowest_fee() -> None:
    depth, fee = pair_swap_terms(
        ["ethereum", "ethereum", "ethereum", "arbitrum", "ethereum"],
        ["WETH", "USDC", "WETH", "WETH", "WETH"], ["USDC", "WETH", "DAI", "USDC", "USDC"],
        [1e6, 2e6, 5e5, 3e5, np.nan], [0.003, 0.0005, 0.003, 0.01, 0.0001])
    # one pair on ethereum (either token order); a pool without depth adds nothing
    np.testing.assert_allclose(depth, [3e6, 3e6, 5e5, 3e5, 3e6])
    np.testing.assert_allclose(fee, [0.0005, 0.0005, 0.003, 0.01, 0.0001])


def test_allocator_estimate_lies_between_the_floor_and_the_single_pool_cost(
        market: MarketData) -> None:
    rng = np.random.default_rng(9)
    t0, t1, ch = (market.names(c) for c in ("token0", "token1", "chain"))
    book = StrategyBook(market, 1e7, None, 0.0, routed=True)
    err_est, err_single = [], []
    for e in range(30, market.n_bars, 13):
        delta = rng.choice([-1.0, 1.0], len(market.pools)) * 10 ** rng.uniform(
            2, 8, len(market.pools))
        own = market.swap_depth(e)
        _, f1, i1 = rebalance_cost(delta, own, market.fee_tier)
        pdepth, pfee = pair_swap_terms(ch, t0, t1, own, market.fee_tier)
        _, f2, i2 = rebalance_cost(delta, pdepth, pfee)
        floor = zap_cost_floor(market.pool_states(e), market.pools, t0, t1, ch, own,
                               market.fee_tier).cost(0.5 * delta)
        est = f2 + i2
        assert np.all(est <= (f1 + i1) * (1 + 1e-12))
        assert np.all(floor <= est * (1 + 1e-9) + 1e-9)
        charged = book.routed_swap_costs(e, delta, f1 + i1)
        shared = pdepth > own  # pools with another pool in their pair
        err_est.append(np.log(est / charged)[shared])
        err_single.append(np.log((f1 + i1) / charged)[shared])
    est_err, single_err = np.concatenate(err_est), np.concatenate(err_single)
    print(f"log(estimate / charged): median {np.median(est_err):.3f}, mean |.| "
          f"{np.abs(est_err).mean():.3f}; log(single / charged): median "
          f"{np.median(single_err):.3f}, mean |.| {np.abs(single_err).mean():.3f}")
    # where routing can split, the estimate tracks the ledger's charge better than the
    # single-pool cost does
    assert np.abs(est_err).mean() < np.abs(single_err).mean()


def test_a_pool_alone_in_its_pair_is_charged_its_own_cost() -> None:
    st = _states(["uniswap_v2"], [0.5], [0.003], [2e6], [2000.0])
    delta = np.array([3e5])
    _, fee, impact = rebalance_cost(delta, st.depth_usd(), st.fee_tier)
    charged = routed_zap_costs(st, ["p0"], ["WETH"], ["USDC"], ["ethereum"], delta, fee + impact)
    assert charged[0] == (fee + impact)[0]
