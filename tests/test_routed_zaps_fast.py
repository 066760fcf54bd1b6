"""Zaps priced in arrays equal the general router's price of each zap, one by one."""

from __future__ import annotations

import numpy as np
import pytest

from features.build import build_features
from features.sources.simulator import simulate_market
from models.routing import routed_zap_costs, swap_cost_usd
from models.routing.fast import parallel_split, parallel_split_many
from models.routing.graph import PoolStates, RoutingError
from pipelines.backtest.book import StrategyBook
from pipelines.backtest.market import MarketData


@pytest.fixture(scope="module")
def market() -> MarketData:
    panel, _ = simulate_market(n_pools=24, days=20, seed=5, freq="1h")
    return MarketData.from_panel(panel, build_features(panel))


def _general(states: PoolStates, pools: list[str], t0: np.ndarray, t1: np.ndarray,
             chains: np.ndarray, delta: np.ndarray, single: np.ndarray) -> np.ndarray:
    """The router's cost of each zap alone (`swap_cost_usd`, one hop), capped at `single`; a
    pool alone in its pair keeps its single-pool cost."""
    out = single.copy()
    held = set(states.pool_id.tolist())
    r0, r1 = states.reserves()
    usable = (r0 > 0) & (r1 > 0) & (states.token0 != states.token1)
    members: dict[tuple[str, ...], int] = {}
    for c, a, b in zip(states.chain[usable], states.token0[usable], states.token1[usable],
                       strict=True):
        key = (str(c), *sorted((str(a), str(b))))
        members[key] = members.get(key, 0) + 1
    for j in np.flatnonzero((delta != 0) & (out > 0)):
        if pools[j] not in held or members.get(
                (str(chains[j]), *sorted((str(t0[j]), str(t1[j])))), 0) == 1:
            continue
        sell, buy = (t0[j], t1[j]) if delta[j] > 0 else (t1[j], t0[j])
        try:
            sc = swap_cost_usd(states, str(sell), str(buy), 0.5 * abs(float(delta[j])),
                               max_hops=1, chain=str(chains[j]))
        except RoutingError:
            continue
        r = sc.route
        if r.amount_in_used >= r.amount_in * (1 - 1e-9) and np.isfinite(sc.routed_usd):
            out[j] = min(out[j], max(sc.routed_usd, 0.0))
    return out


def test_several_pools_per_pair(market: MarketData) -> None:
    meta = market.meta
    pairs = {(c, *sorted((a, b))) for c, a, b in zip(meta["chain"], meta["token0"],
                                                      meta["token1"], strict=True)}
    assert len(pairs) < len(meta)  # some pairs have several pools: routing can split


def test_batched_zap_costs_equal_the_router(market: MarketData) -> None:
    rng = np.random.default_rng(11)
    book = StrategyBook(market, 1e7, None, 0.0, routed=True)
    t0, t1, ch = (market.names(c) for c in ("token0", "token1", "chain"))
    checked = saved = 0
    for e in range(30, market.n_bars, 9):
        # small moves take the spot shortcut, large ones split or exhaust the pools
        size = 10 ** rng.uniform(-2, 9.5, len(market.pools))
        delta = rng.choice([-1.0, 0.0, 1.0], len(market.pools)) * size
        _, fee, impact = book.pool_costs(e, delta)
        single = fee + impact
        states = market.pool_states(e)
        fast = routed_zap_costs(states, market.pools, t0, t1, ch, delta, single)
        ref = _general(states, market.pools, t0, t1, ch, delta, single)
        np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=0.0)
        checked += int((delta != 0).sum())
        saved += int((ref < single).sum())
    assert checked > 500 and saved > 100


def test_split_of_many_trades_equals_one_by_one() -> None:
    rng = np.random.default_rng(3)
    n, k = 40, 4
    ra, rb = 10 ** rng.uniform(2, 6, (n, k)), 10 ** rng.uniform(2, 6, (n, k))
    gamma = 1.0 - rng.choice([0.0001, 0.0005, 0.003, 0.01], (n, k))
    cap = np.where(rng.random((n, k)) < 0.5, np.inf, ra * 10 ** rng.uniform(-2, 1, (n, k)))
    valid = np.arange(k)[None, :] < rng.integers(1, k + 1, n)[:, None]
    amount = ra.sum(axis=1) * 10 ** rng.uniform(-4, 1.5, n)
    many = parallel_split_many(ra, rb, gamma, cap, amount, valid)
    for i in range(n):
        v = valid[i]
        one, _ = parallel_split(ra[i, v], rb[i, v], gamma[i, v], cap[i, v], amount[i])
        np.testing.assert_allclose(many[i, v], one, rtol=1e-12, atol=0.0)
        assert np.all(many[i, ~v] == 0.0)
