"""Optimal routing: closed-form split, convex program, optimality, pool states, flow model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from models.economics.costs import STABLE_DEPTH_MULTIPLIER, rebalance_cost, swap_depth_usd
from models.routing import (
    CAPACITY,
    OPTIMAL,
    NoRouteError,
    PoolStates,
    RoutingError,
    UnknownTokenError,
    build_network,
    route,
    swap_cost_usd,
    volume_share,
)
from models.routing._flows import best_chain, settle
from models.routing.conic import solve_conic
from models.routing.fast import parallel_split
from models.routing.solver import solve_convex

USD = {"WETH": 2000.0, "USDC": 1.0, "USDT": 1.0, "WBTC": 40000.0, "DAI": 1.0, "BAL": 5.0}
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def states(pools: list[dict], usd: dict[str, float] | None = None) -> PoolStates:
    """Pool states from one panel row per pool: dict(id, t0, t1, tvl, fee[, protocol, price,
    weight0, chain, liquidity, decimals])."""
    usd = usd or USD
    rows, meta = [], []
    for p in pools:
        u1 = usd[p["t1"]]
        u0 = p.get("u0", usd[p["t0"]])
        rows.append({"pool_id": p["id"], "timestamp": T0, "close": p.get("price", u0 / u1),
                     "tvl_usd": p["tvl"], "token0_price_usd": u0, "token1_price_usd": u1,
                     "liquidity": p.get("liquidity", np.nan), "missing": False})
        meta.append({"pool_id": p["id"], "protocol": p.get("protocol", "uniswap_v2"),
                     "chain": p.get("chain", "ethereum"), "token0": p["t0"], "token1": p["t1"],
                     "fee_tier": p["fee"], "weight0": p.get("weight0", np.nan),
                     "decimals0": p.get("decimals", (np.nan, np.nan))[0],
                     "decimals1": p.get("decimals", (np.nan, np.nan))[1]})
    return PoolStates.from_panel(pd.DataFrame(rows), pd.DataFrame(meta))


def v2(pid: str, x: float, y: float, fee: float, t0: str = "WETH", t1: str = "USDC") -> dict:
    """A constant-product pool holding x of t0 and y of t1 (t0's USD price in its row: y / x
    times t1's, as the panel derives it through the pool)."""
    return {"id": pid, "t0": t0, "t1": t1, "tvl": 2 * y * USD[t1], "fee": fee, "price": y / x,
            "u0": y / x * USD[t1]}


# --- closed form -----------------------------------------------------------------------
def test_two_constant_product_pools_match_the_closed_form_split() -> None:
    x1, y1, g1 = 1000.0, 2.0e6, 1 - 0.003
    x2, y2, g2 = 400.0, 0.81e6, 1 - 0.0005
    amount = 60.0
    # equal marginal rates g x y / (x + g d)^2 = lambda: d_i = sqrt(x_i y_i / g_i) s - x_i / g_i
    s = (amount + x1 / g1 + x2 / g2) / (np.sqrt(x1 * y1 / g1) + np.sqrt(x2 * y2 / g2))
    d1, d2 = np.sqrt(x1 * y1 / g1) * s - x1 / g1, np.sqrt(x2 * y2 / g2) * s - x2 / g2
    assert d1 > 0 and d2 > 0 and d1 + d2 == pytest.approx(amount)
    expected = y1 * g1 * d1 / (x1 + g1 * d1) + y2 * g2 * d2 / (x2 + g2 * d2)

    res = route(states([v2("a", x1, y1, 0.003), v2("b", x2, y2, 0.0005)]), "WETH", "USDC",
                amount)
    got = {f["pool_id"]: f["amount_in"] for f in res.pool_flows}
    assert res.method == "closed_form" and res.status == OPTIMAL
    assert got["a"] == pytest.approx(d1, rel=1e-9) and got["b"] == pytest.approx(d2, rel=1e-9)
    assert res.amount_out == pytest.approx(expected, rel=1e-12)

    # an independent check: the best split found by a scalar search over the fraction in "a"
    def out(f: float) -> float:
        a, b = f * amount, (1 - f) * amount
        return -(y1 * g1 * a / (x1 + g1 * a) + y2 * g2 * b / (x2 + g2 * b))

    best = minimize_scalar(out, bounds=(0, 1), method="bounded", options={"xatol": 1e-12})
    assert -best.fun == pytest.approx(res.amount_out, rel=1e-10)
    assert res.amount_out > res.best_single_pool_out


def test_convex_program_agrees_with_the_closed_form_on_parallel_pools() -> None:
    pools = states([v2("a", 1000, 2.0e6, 0.003), v2("b", 400, 0.81e6, 0.0005),
                    v2("c", 90, 0.18e6, 0.01)])
    net = build_network(pools, "WETH", "USDC")
    assert net.direct
    usd = np.array([USD[t] for t in net.tokens])
    for amount in (0.5, 60.0, 900.0):
        exact, _ = parallel_split(net.ra, net.rb, net.gamma, net.cap_input(), amount)
        sol = solve_convex(net, amount, usd)
        assert sol.status == "optimal"
        a, b = settle(net, exact, amount), settle(net, sol.inputs, amount)
        assert b.amount_out == pytest.approx(a.amount_out, rel=1e-8)
        assert np.allclose(sol.inputs, exact, rtol=1e-3, atol=1e-5 * amount)


# --- optimality ------------------------------------------------------------------------
def test_marginal_rates_are_equal_across_used_pools() -> None:
    pools = states([v2("a", 1000, 2.0e6, 0.003), v2("b", 400, 0.81e6, 0.0005),
                    v2("c", 90, 0.18e6, 0.01), v2("d", 3000, 6.1e6, 0.003)])
    res = route(pools, "WETH", "USDC", 200.0)
    rates = np.array([f["marginal_rate"] for f in res.pool_flows])
    assert len(rates) >= 3
    assert np.ptp(rates) <= 1e-9 * rates.mean()
    net = build_network(pools, "WETH", "USDC")
    unused = ~np.isin(net.pool_ids, [f["pool_id"] for f in res.pool_flows])
    assert np.all(net.spot()[unused] <= rates.mean() * (1 + 1e-12))  # KKT for the idle pools


def test_multi_hop_paths_share_one_marginal_rate() -> None:
    pools = states([
        v2("direct", 500, 1.0e6, 0.003),
        v2("weth-wbtc", 2000, 100, 0.0005, "WETH", "WBTC"),
        {"id": "wbtc-usdc", "t0": "WBTC", "t1": "USDC", "tvl": 8e6, "fee": 0.0005,
         "price": 40000.0},
        v2("weth-dai", 800, 1.6e6, 0.0005, "WETH", "DAI"),
        {"id": "dai-usdc", "t0": "DAI", "t1": "USDC", "tvl": 4e6, "fee": 0.0001,
         "protocol": "stableswap", "price": 1.0}])
    res = route(pools, "WETH", "USDC", 150.0)
    assert res.method == "convex" and res.status == OPTIMAL
    assert {tuple(s["path"]) for s in res.splits} == {
        ("WETH", "USDC"), ("WETH", "WBTC", "USDC"), ("WETH", "DAI", "USDC")}
    flows = {f["pool_id"]: f for f in res.pool_flows}
    path_rates = [flows["direct"]["marginal_rate"],
                  flows["weth-wbtc"]["marginal_rate"] * flows["wbtc-usdc"]["marginal_rate"],
                  flows["weth-dai"]["marginal_rate"] * flows["dai-usdc"]["marginal_rate"]]
    assert np.ptp(path_rates) <= 1e-4 * np.mean(path_rates)
    assert sum(s["amount_in"] for s in res.splits) == pytest.approx(150.0)
    assert sum(s["amount_out"] for s in res.splits) == pytest.approx(res.amount_out)
    assert res.amount_out > res.best_single_pool_out


pool_st = st.fixed_dictionaries({
    "tvl": st.floats(1e4, 1e9), "fee": st.sampled_from([0.0001, 0.0005, 0.003, 0.01]),
    "protocol": st.sampled_from(["uniswap_v2", "uniswap_v3", "stableswap"]),
    "skew": st.floats(-0.01, 0.01)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pools=st.lists(pool_st, min_size=1, max_size=6), frac=st.floats(1e-7, 3.0))
def test_routing_never_does_worse_than_the_best_single_pool(pools: list[dict],
                                                            frac: float) -> None:
    specs = [{"id": f"p{i}", "t0": "WETH", "t1": "USDC", "tvl": p["tvl"], "fee": p["fee"],
              "protocol": p["protocol"], "price": 2000.0 * (1 + p["skew"])}
             for i, p in enumerate(pools)]
    ps = states(specs)
    amount = frac * float(ps.tvl_usd.sum()) / 2 / 2000.0  # up to 3x the pair's WETH side
    res = route(ps, "WETH", "USDC", amount)
    assert res.amount_out >= res.best_single_pool_out * (1 - 1e-12)
    # the closed form itself, before the router's single-pool safeguard
    net = build_network(ps, "WETH", "USDC")
    d, _ = parallel_split(net.ra, net.rb, net.gamma, net.cap_input(), amount)
    raw = settle(net, d, amount)
    assert raw.amount_out >= best_chain(net, amount)[0] * (1 - 1e-9)
    assert raw.used_in <= amount * (1 + 1e-12)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tvls=st.lists(st.floats(1e5, 1e8), min_size=5, max_size=5),
       frac=st.floats(1e-5, 0.5))
def test_convex_routing_beats_every_single_chain(tvls: list[float], frac: float) -> None:
    ps = states([
        {"id": "d", "t0": "WETH", "t1": "USDC", "tvl": tvls[0], "fee": 0.003},
        {"id": "e", "t0": "WETH", "t1": "USDC", "tvl": tvls[1], "fee": 0.0005,
         "protocol": "uniswap_v3"},
        {"id": "w1", "t0": "WBTC", "t1": "WETH", "tvl": tvls[2], "fee": 0.0005},
        {"id": "w2", "t0": "WBTC", "t1": "USDC", "tvl": tvls[3], "fee": 0.003},
        {"id": "s", "t0": "DAI", "t1": "USDC", "tvl": tvls[4], "fee": 0.0004,
         "protocol": "stableswap"}])
    amount = frac * tvls[0] / 2 / 2000.0
    net = build_network(ps, "WETH", "USDC")
    usd = np.array([USD[t] for t in net.tokens])
    single = best_chain(net, amount)[0]
    for sol in (solve_convex(net, amount, usd), solve_conic(net, amount, usd)):
        assert sol.status in ("optimal", "optimal_inaccurate")
        raw = settle(net, sol.inputs, amount)
        assert raw.amount_out >= single * (1 - 1e-6)


def test_direct_conic_build_matches_the_cvxpy_program() -> None:
    ps = states([
        v2("direct", 500, 1.0e6, 0.003),
        v2("weth-wbtc", 2000, 100, 0.0005, "WETH", "WBTC"),
        {"id": "wbtc-usdc", "t0": "WBTC", "t1": "USDC", "tvl": 8e6, "fee": 0.0005,
         "protocol": "uniswap_v3", "price": 40000.0},
        {"id": "bal", "t0": "WETH", "t1": "USDC", "tvl": 3e6, "fee": 0.002,
         "protocol": "weighted", "weight0": 0.7, "price": 2000.0 * 1.001}])
    net = build_network(ps, "WETH", "USDC")
    assert net.weighted.any() and not net.direct
    usd = np.array([ps.token_usd()[t] for t in net.tokens])
    for amount in (0.01, 30.0, 3000.0):
        ref = settle(net, solve_convex(net, amount, usd).inputs, amount)
        got = settle(net, solve_conic(net, amount, usd).inputs, amount)
        assert got.amount_out == pytest.approx(ref.amount_out, rel=1e-7)
        assert np.allclose(got.inputs, ref.inputs, rtol=1e-3, atol=1e-6 * amount)


def test_trades_too_small_to_move_prices_take_the_best_pool_without_a_solver() -> None:
    pools = states([v2("a", 1000, 2.0e6, 0.003), v2("b", 400, 0.81e6, 0.0005),
                    v2("wb", 1000, 50, 0.003, "WETH", "WBTC"),
                    {"id": "bu", "t0": "WBTC", "t1": "USDC", "tvl": 1e6, "fee": 0.003}])
    res = route(pools, "WETH", "USDC", 1e-12)
    assert res.method == "spot" and res.status == OPTIMAL
    assert [f["pool_id"] for f in res.pool_flows] == ["b"]  # the best rate after fees
    assert res.amount_out == pytest.approx(1e-12 * 0.9995 * 0.81e6 / 400, rel=1e-9)


# --- pool types, caps, gas -------------------------------------------------------------
def test_capacity_of_concentrated_pools_is_their_real_reserves() -> None:
    ps = states([{"id": "v3", "t0": "WETH", "t1": "USDC", "tvl": 4e6, "fee": 0.0005,
                  "protocol": "uniswap_v3"}])
    res = route(ps, "WETH", "USDC", 1e6)
    assert res.status == CAPACITY
    assert res.amount_out == pytest.approx(2e6)  # the USDC half of the TVL, no more
    assert res.amount_in_used < 1e6


def test_stableswap_is_deeper_than_constant_product_for_small_trades() -> None:
    base = {"t0": "USDC", "t1": "USDT", "tvl": 1e7, "fee": 0.0004}
    ss = route(states([{**base, "id": "ss", "protocol": "stableswap"}]), "USDC", "USDT", 1e5)
    cp = route(states([{**base, "id": "cp"}]), "USDC", "USDT", 1e5)
    assert ss.price_impact < cp.price_impact
    depth = float(swap_depth_usd(1e7, "stableswap"))
    assert depth == STABLE_DEPTH_MULTIPLIER * 5e6
    # the approximation: constant product on that depth, fee on the input
    expected = 0.9996 * 1e5 * depth / (depth + 0.9996 * 1e5)
    assert ss.amount_out == pytest.approx(expected, rel=1e-12)


def test_weighted_pool_follows_the_balancer_invariant() -> None:
    usd = {**USD, "BAL": 5.0}
    ps = states([{"id": "w", "t0": "BAL", "t1": "WETH", "tvl": 1e6, "fee": 0.003,
                  "protocol": "weighted", "weight0": 0.8, "price": 5.0 / 2000.0}], usd)
    r0, r1 = ps.reserves()
    assert (r1[0] / 0.2) / (r0[0] / 0.8) == pytest.approx(ps.price[0])
    res = route(ps, "BAL", "WETH", 2000.0)
    x = 0.997 * 2000.0
    expected = r1[0] * (1 - (r0[0] / (r0[0] + x)) ** (0.8 / 0.2))
    assert res.amount_out == pytest.approx(expected, rel=1e-6)
    assert res.method == "convex"


def test_gas_drops_pools_that_do_not_earn_it() -> None:
    pools = states([v2("a", 1000, 2.0e6, 0.003), v2("b", 400, 0.81e6, 0.0005),
                    v2("c", 90, 0.18e6, 0.01)])
    free = route(pools, "WETH", "USDC", 40.0)
    assert len(free.pool_flows) >= 2
    paid = route(pools, "WETH", "USDC", 40.0, gas_usd=5000.0)
    assert len(paid.pool_flows) == 1 and paid.dropped_for_gas
    assert paid.gas_usd == 5000.0
    assert paid.amount_out_net is not None
    assert paid.amount_out_net == pytest.approx(paid.amount_out - 5000.0)
    assert paid.amount_out_net >= free.amount_out - 5000.0 * len(free.pool_flows)
    table = route(pools, "WETH", "USDC", 40.0, gas_usd={"ethereum": 1e-6})
    assert table.amount_out == pytest.approx(free.amount_out)


# --- errors ----------------------------------------------------------------------------
def test_unknown_token_names_it_and_lists_the_known_ones() -> None:
    pools = states([v2("a", 1000, 2.0e6, 0.003)])
    with pytest.raises(UnknownTokenError) as err:
        route(pools, "WETH", "USDX", 1.0)
    assert "'USDX'" in str(err.value) and "USDC, WETH" in str(err.value)
    assert route(pools, "weth", "usdc", 1.0).token_in == "WETH"  # case-insensitive


@pytest.mark.parametrize("amount", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_amounts_are_refused(amount: float) -> None:
    with pytest.raises(RoutingError, match="amount_in"):
        route(states([v2("a", 1000, 2.0e6, 0.003)]), "WETH", "USDC", amount)


def test_unconnected_tokens_and_hop_limits_are_clear_errors() -> None:
    pools = states([v2("a", 1000, 2.0e6, 0.003),
                    {"id": "s", "t0": "DAI", "t1": "USDT", "tvl": 1e6, "fee": 0.0001},
                    {"id": "u", "t0": "USDC", "t1": "DAI", "tvl": 1e6, "fee": 0.0001}])
    with pytest.raises(NoRouteError, match="no path of at most 2 pool"):
        route(pools, "WETH", "USDT", 1.0)
    assert route(pools, "WETH", "USDT", 1.0, max_hops=3).splits[0]["path"] == [
        "WETH", "USDC", "DAI", "USDT"]
    with pytest.raises(RoutingError, match="both 'WETH'"):
        route(pools, "WETH", "weth", 1.0)
    with pytest.raises(RoutingError, match="max_hops"):
        route(pools, "WETH", "USDC", 1.0, max_hops=0)


def test_pools_on_other_chains_never_trade_together() -> None:
    pools = states([v2("a", 1000, 2.0e6, 0.003),
                    {**v2("b", 4000, 8.0e6, 0.003), "chain": "arbitrum"}])
    res = route(pools, "WETH", "USDC", 10.0)
    assert res.chain == "arbitrum" and [f["pool_id"] for f in res.pool_flows] == ["b"]
    assert route(pools, "WETH", "USDC", 10.0, chain="ethereum").pool_flows[0]["pool_id"] == "a"
    with pytest.raises(RoutingError, match="unknown chain"):
        route(pools, "WETH", "USDC", 10.0, chain="solana")


# --- pool states -----------------------------------------------------------------------
def test_states_read_nothing_after_their_time_and_skip_unusable_pools() -> None:
    rows = pd.DataFrame({
        "pool_id": ["a", "a", "b"], "close": [2000.0, 2100.0, 1.0],
        "timestamp": [T0, T0 + pd.Timedelta("1h"), T0], "tvl_usd": [1e6, 2e6, 0.0],
        "token0_price_usd": [2000.0, 2100.0, 1.0], "token1_price_usd": [1.0, 1.0, 1.0]})
    meta = pd.DataFrame({"pool_id": ["a", "b"], "protocol": "uniswap_v2",
                         "chain": "ethereum", "token0": ["WETH", "DAI"],
                         "token1": ["USDC", "USDC"], "fee_tier": 0.003})
    early = PoolStates.from_panel(rows, meta, at="2024-01-01 00:30")  # naive: UTC
    late = PoolStates.from_panel(rows, meta)
    assert early.price.tolist() == [2000.0] and late.price.tolist() == [2100.0]
    assert "b" in late.skipped and late.pool_id.tolist() == ["a"]
    cut = PoolStates.from_panel(rows[rows["timestamp"] <= T0], meta)
    assert cut.price.tolist() == early.price.tolist()


def test_concentrated_depth_from_liquidity_or_tvl_efficiency() -> None:
    base = {"id": "v3", "t0": "WETH", "t1": "USDC", "tvl": 1e7, "fee": 0.0005,
            "protocol": "uniswap_v3"}
    approx = states([base])
    assert approx.depth_source[0] == "tvl_approx"
    assert approx.active_usd[0] == pytest.approx(4.0 * 1e7)  # POOL_EFFICIENCY_BY_TIER 0.05 %
    raw = 5e4 * 10 ** ((18 + 6) / 2)  # human L = 5e4 with decimals 18 / 6
    exact = states([{**base, "liquidity": raw, "decimals": (18, 6)}])
    r0, r1 = exact.reserves()
    assert exact.depth_source[0] == "liquidity"
    assert r0[0] == pytest.approx(5e4 / np.sqrt(2000.0)) and r1[0] == pytest.approx(
        5e4 * np.sqrt(2000.0))


# --- flow model ------------------------------------------------------------------------
def test_volume_share_follows_depth_fee_and_our_liquidity() -> None:
    pools = states([{"id": "cheap", "t0": "WETH", "t1": "USDC", "tvl": 2e7, "fee": 0.0005,
                     "protocol": "uniswap_v3"},
                    {"id": "dear", "t0": "WETH", "t1": "USDC", "tvl": 2e7, "fee": 0.003,
                     "protocol": "uniswap_v3"}])
    base = volume_share(pools)
    assert base.sum() == pytest.approx(1.0)
    assert base["cheap"] > base["dear"] > 0
    more = volume_share(pools, {"dear": 2e7})
    assert more["dear"] > base["dear"]  # added liquidity attracts flow
    assert volume_share(pools, trade_usd=1.0)["cheap"] == pytest.approx(1.0)
    mixed = states([{"id": "cp", "t0": "WETH", "t1": "USDC", "tvl": 2e7, "fee": 0.003},
                    {"id": "bal", "t0": "USDC", "t1": "WETH", "tvl": 2e7, "fee": 0.003,
                     "protocol": "weighted", "weight0": 0.2, "price": 1 / 2000.0}])
    shares = volume_share(mixed)
    assert shares.sum() == pytest.approx(1.0) and (shares > 0.05).all()
    with pytest.raises(RoutingError, match="one pair"):
        volume_share(states([v2("a", 1, 2000, 0.003), v2("b", 1, 20, 0.003, "WBTC", "DAI")]))


# --- rebalancing cost ------------------------------------------------------------------
def test_swap_cost_of_one_pool_matches_the_economics_core() -> None:
    one = states([v2("a", 1000, 2.0e6, 0.003)])
    cost = swap_cost_usd(one, "USDC", "WETH", 1e5)
    assert cost.routed_usd == pytest.approx(cost.single_pool_usd, rel=1e-9)
    # the core charges the fee and the impact side by side; routing takes the fee off the
    # input before the curve (as the pools do), so the two agree to first order
    _, fee, impact = rebalance_cost(2e5, 2.0e6, 0.003)
    assert cost.routed_usd == pytest.approx(float(fee + impact), rel=1e-2)


def test_swap_cost_saves_against_the_single_pool_when_pools_are_parallel() -> None:
    pools = states([v2("a", 1000, 2.0e6, 0.003), v2("b", 400, 0.8e6, 0.0005)])
    cost = swap_cost_usd(pools, "WETH", "USDC", 5e5)
    assert 0 < cost.routed_usd < cost.single_pool_usd and cost.saved_usd > 0
    with pytest.raises(RoutingError, match="amount_usd"):
        swap_cost_usd(pools, "WETH", "USDC", 0.0)
