"""Convex allocator: constraints, stress pre-emption, min-trade snapping, fallbacks, dilution."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.allocator import AllocationError, AllocatorConfig, allocate

POOLS = ["eth-usdc", "eth-usdt", "btc-eth", "btc-usdc", "usdc-usdt", "link-eth"]
TOKENS = [("WETH", "USDC"), ("WETH", "USDT"), ("WBTC", "WETH"), ("WBTC", "USDC"),
          ("USDC", "USDT"), ("LINK", "WETH")]


def _meta(protocol: str = "uniswap_v2") -> pd.DataFrame:
    """Metadata for the six test pools (one chain, 0.3 % tier; usdc-usdt is stableswap)."""
    return pd.DataFrame({
        "pool_id": POOLS, "protocol": [protocol] * 4 + ["stableswap", protocol],
        "chain": "ethereum", "token0": [a for a, _ in TOKENS], "token1": [b for _, b in TOKENS],
        "fee_tier": 0.003})


def _fc(**over: Any) -> pd.DataFrame:
    """Daily forecasts: fee yield ~1e-3 / day (~35 % APR), TVL some 1e7, vol 60 %, small stress."""
    fee = np.array([1.0e-3, 0.9e-3, 0.8e-3, 0.9e-3, 0.5e-3, 1.2e-3])
    base = pd.DataFrame({
        "fee_yield": fee, "fee_yield_q10": 0.8 * fee,
        "tvl_usd": [5e7, 4e7, 3e7, 3e7, 8e7, 2e7],
        "volatility": [0.6, 0.6, 0.4, 0.5, 0.02, 0.9],
        "p_stress": [0.002, 0.002, 0.001, 0.002, 0.001, 0.003],
    }, index=pd.Index(POOLS, name="pool_id"))
    for k, v in over.items():
        base[k] = v
    return base


def _cfg(**kw: Any) -> AllocatorConfig:
    """Config for a 1M capital, daily horizon, flat 5 USD gas, 15 % loss given stress."""
    base: dict[str, Any] = {"capital_usd": 1e6, "gas_usd": 5.0, "min_trade_usd": 100.0,
                            "max_weight": 0.4, "max_token_weight": 0.7,
                            "stress_loss": 0.15, "contagion": 0.5, "cost_horizons": 30.0}
    base.update(kw)
    return AllocatorConfig(**base)


def _zero() -> pd.Series:
    """All-cash current weights."""
    return pd.Series(0.0, index=POOLS)


def test_constraints_hold() -> None:
    """Weights are non-negative, sum <= 1, and respect per-pool and per-token caps."""
    cfg = _cfg(max_weight=0.3, max_token_weight=0.5)
    a = allocate(_fc(), _zero(), _meta(), cfg)
    w = a.weights
    assert a.fallback_chain == []
    assert (w >= -1e-9).all() and w.sum() <= 1 + 1e-6 and (w <= 0.3 + 1e-6).all()
    meta = _meta().set_index("pool_id")
    for tok in {t for pair in TOKENS for t in pair}:
        held = meta.index[(meta["token0"] == tok) | (meta["token1"] == tok)]
        assert w[held].sum() <= 0.5 + 1e-6, tok
    assert w.sum() > 0.5  # profitable pools are used
    assert set(a.reasons) == set(POOLS)
    assert {"fee", "il", "lvr", "stress_loss", "cost"} <= set(a.expected.columns)
    assert any("cap" in r for r in a.reasons.values())


def test_turnover_cap() -> None:
    """Sum |w - w_prev| stays within max_turnover."""
    prev = pd.Series([0.0, 0.0, 0.0, 0.0, 0.5, 0.0], index=POOLS)
    a = allocate(_fc(), prev, _meta(), _cfg(max_turnover=0.2))
    assert float((a.weights - prev).abs().sum()) <= 0.2 + 1e-6
    assert a.fallback_chain == []


def test_stress_preemption_cuts_pool_and_token_neighbours() -> None:
    """Raising one pool's p_stress lowers its weight and those of pools sharing its tokens."""
    cfg = _cfg(max_weight=1.0, max_token_weight=1.0)
    calm = allocate(_fc(), _zero(), _meta(), cfg).weights
    p = _fc()["p_stress"].copy()
    p["eth-usdc"] = 0.62
    a = allocate(_fc(p_stress=p), _zero(), _meta(), cfg)
    hot = a.weights
    assert calm["eth-usdc"] > 0.05 and hot["eth-usdc"] < 1e-4
    assert "p=0.62" in a.reasons["eth-usdc"] and "0.00" in a.reasons["eth-usdc"]
    neighbours = ["eth-usdt", "btc-eth", "link-eth", "btc-usdc", "usdc-usdt"]  # WETH or USDC
    assert all(hot[n] <= calm[n] + 1e-6 for n in neighbours)
    assert sum(calm[n] - hot[n] for n in neighbours) > 0.05
    assert a.expected.loc["eth-usdt", "p_eff"] == pytest.approx(0.31)


def test_min_trade_snaps_small_moves() -> None:
    """Moves below min_trade_usd keep the current weight exactly; big moves still happen."""
    kw: dict[str, Any] = {"cost_horizons": 1e9, "max_weight": 1.0, "max_token_weight": 1.0,
                          "capital_usd": 3e7}
    first = allocate(_fc(), _zero(), _meta(), _cfg(min_trade_usd=0.0, **kw)).weights
    fee = _fc()["fee_yield"].copy()
    fee["eth-usdc"] *= 1.01
    fee["link-eth"] *= 1.5  # a large change elsewhere
    free = allocate(_fc(fee_yield=fee), first, _meta(), _cfg(min_trade_usd=0.0, **kw))
    move_free = ((free.weights - first).abs() * 3e7).sort_values()
    moved = move_free[move_free > 1.0]
    assert len(moved) >= 3
    threshold = float(moved.iloc[len(moved) // 2 - 1] + moved.iloc[len(moved) // 2]) / 2
    small = moved.index[moved < threshold]
    snap = allocate(_fc(fee_yield=fee), first, _meta(), _cfg(min_trade_usd=threshold, **kw))
    moves = (snap.weights - first).abs() * 3e7
    assert (moves[small] == 0.0).any()
    for p in moves.index[moves == 0.0].intersection(small):
        assert "min trade" in snap.reasons[p]
    assert ((moves == 0) | (moves >= threshold - 1e-6)).all()
    assert moves.max() > threshold
    assert snap.weights.sum() <= 1 + 1e-6 and snap.fallback_chain == []


def test_nan_forecast_holds_pool_and_records() -> None:
    """A NaN forecast pins that pool at its current weight and says so; no exception."""
    prev = pd.Series([0.1, 0.1, 0.1, 0.1, 0.1, 0.1], index=POOLS)
    fee = _fc()["fee_yield"].copy()
    fee["btc-eth"] = np.nan
    a = allocate(_fc(fee_yield=fee), prev, _meta(), _cfg())
    assert a.weights["btc-eth"] == pytest.approx(0.1)
    assert any("btc-eth" in c for c in a.fallback_chain)
    assert "non-finite fee_yield" in a.reasons["btc-eth"]
    assert np.isfinite(a.weights).all()


def test_infeasible_falls_back_to_capped_equal_weight() -> None:
    """Over-cap current weights with zero turnover allowed: equal weight, chain recorded."""
    prev = pd.Series([0.5, 0.5, 0.0, 0.0, 0.0, 0.0], index=POOLS)
    cfg = _cfg(max_weight=0.25, max_turnover=0.0)
    a = allocate(_fc(), prev, _meta(), cfg)
    chain = " | ".join(a.fallback_chain)
    assert "solver failed" in chain and "capped equal weight" in chain
    assert (a.weights <= 0.25 + 1e-9).all() and a.weights.sum() <= 1 + 1e-9
    assert a.weights.sum() > 0


def test_solver_failure_keeps_feasible_previous_weights() -> None:
    """An unusable solver keeps previous weights when they satisfy the constraints."""
    prev = pd.Series([0.2, 0.1, 0.1, 0.1, 0.1, 0.1], index=POOLS)
    a = allocate(_fc(), prev, _meta(), _cfg(solver="NO_SUCH_SOLVER"))
    assert a.fallback_chain[-1] == "previous weights"
    pd.testing.assert_series_equal(a.weights, prev.rename("weight").rename_axis("pool_id"),
                                   check_exact=False)


@pytest.mark.parametrize("bad, field", [
    (lambda f: f.drop(columns="volatility"), "volatility"),
    (lambda f: f.assign(tvl_usd=[-1.0, 1, 1, 1, 1, 1]), "tvl_usd"),
    (lambda f: f.assign(p_stress=[0.0, 1.5, 0, 0, 0, 0]), "p_stress"),
])
def test_invalid_inputs_name_pool_and_field(bad: Any, field: str) -> None:
    """Malformed inputs raise AllocationError naming the field (and pool when row-level)."""
    with pytest.raises(AllocationError) as err:
        allocate(bad(_fc()), _zero(), _meta(), _cfg())
    assert err.value.field == field
    assert field in str(err.value)


def test_missing_metadata_names_pool() -> None:
    """A pool without metadata is an input error naming it."""
    with pytest.raises(AllocationError, match="link-eth"):
        allocate(_fc(), _zero(), _meta().iloc[:-1], _cfg())


def test_dilution_spreads_large_capital() -> None:
    """Small capital piles into the best pool; capital large against TVL spreads out."""
    fc = _fc(p_stress=0.0, volatility=0.1, fee_yield_q10=_fc()["fee_yield"],
             tvl_usd=[1e6] * 6)
    # costs spread over a very long holding time so that dilution alone shapes the weights
    cfg = dict(max_weight=1.0, max_token_weight=1.0, min_trade_usd=0.0, risk_aversion=0.0,
               cost_horizons=1e9)
    small = allocate(fc, _zero(), _meta(), _cfg(capital_usd=1e4, **cfg)).weights
    large = allocate(fc, _zero(), _meta(), _cfg(capital_usd=1e7, **cfg)).weights
    assert (small > 0.01).sum() == 1 and small.idxmax() == "link-eth"
    assert (large > 0.01).sum() >= 4
    assert large["link-eth"] < 0.5


def test_concentrated_pools_pay_amplified_lvr() -> None:
    """With a v3 range, LVR per dollar scales with capital efficiency (same weights priced)."""
    from models.allocation.pricing import pool_pnl
    from models.economics import centred_range, range_efficiency

    cfg = _cfg(v3_width=0.5)
    w = pd.Series(0.1, index=POOLS)
    a = allocate(_fc(), w, _meta("uniswap_v3"), cfg)
    b = allocate(_fc(), w, _meta("uniswap_v2"), cfg)
    assert np.isfinite(a.weights).all() and np.isfinite(b.weights).all()
    from models.allocation.inputs import check_inputs, incidence
    from models.allocation.pricing import coefficients

    lvr = {}
    for proto in ("uniswap_v3", "uniswap_v2"):
        pp = check_inputs(_fc(), w, _meta(proto))
        names, _, inc = incidence(pp.meta)
        co = coefficients(pp, cfg, names, inc)
        lvr[proto] = pool_pnl(w.to_numpy(), co, w.to_numpy(), cfg)["lvr"]
    eff = float(range_efficiency(1.0, *centred_range(1.0, 0.5)))
    j = POOLS.index("btc-eth")
    ratio = lvr["uniswap_v3"][j] / lvr["uniswap_v2"][j]
    assert lvr["uniswap_v2"][j] < 0
    assert 1.0 < ratio <= eff + 1e-9  # amplified by the efficiency, times the in-range share


def test_200_pools_fast_and_cached() -> None:
    """200 pools: the compiled problem is reused; a warm call takes well under a second."""
    rng = np.random.default_rng(0)
    n = 200
    toks = [f"T{i}" for i in range(25)]
    pools = [f"p{i}" for i in range(n)]
    meta = pd.DataFrame({"pool_id": pools, "protocol": rng.choice(
        ["uniswap_v2", "uniswap_v3", "stableswap"], n), "chain": "ethereum",
        "token0": rng.choice(toks, n), "token1": rng.choice(toks, n), "fee_tier": 0.003})
    cur = pd.Series(0.0, index=pools)
    times = []
    for _ in range(6):
        f = rng.uniform(0, 4e-3, n)
        fc = pd.DataFrame({"fee_yield": f, "fee_yield_q10": 0.5 * f,
                           "tvl_usd": rng.uniform(1e5, 1e8, n), "volatility":
                           rng.uniform(0.05, 1.2, n), "p_stress": rng.beta(0.3, 300, n)},
                          index=pools)
        t0 = time.perf_counter()
        a = allocate(fc, cur, meta, AllocatorConfig())
        times.append(time.perf_counter() - t0)
        cur = a.weights
        assert a.fallback_chain == []
        assert a.weights.sum() <= 1 + 1e-6 and (a.weights <= 0.25 + 1e-6).all()
    assert np.median(times[1:]) < 0.5


def test_zero_weight_reason_names_the_binding_cap() -> None:
    """A profitable pool left at zero because its token is at cap says so, not 'unprofitable'."""
    cfg = _cfg(max_weight=0.3, max_token_weight=0.3, stress_loss=0.0)
    a = allocate(_fc(), _zero(), _meta(), cfg)
    weth = ["eth-usdc", "eth-usdt", "btc-eth", "link-eth"]
    zero = [p for p in weth if a.weights[p] <= 1e-4]
    assert zero and a.weights[weth].sum() == pytest.approx(0.3, abs=1e-4)
    for p in zero:
        assert "at cap" in a.reasons[p] and "do not cover" not in a.reasons[p]


def test_routed_pricing_sees_a_pairs_depth_and_is_single_pool_alone() -> None:
    """With routed costs a move into a pool with a deep sibling of its pair is priced on their
    summed depth and the cheaper fee; a pool alone in its pair costs what it costs alone."""
    meta = _meta()
    meta.loc[1, ["token1", "fee_tier"]] = ["USDC", 0.0005]  # eth-usdt becomes a 2nd WETH/USDC
    fc, zero = _fc(), _zero()
    for routed in (True, False):
        a = allocate(fc, zero, meta, _cfg(routed_costs=routed))
        exp = a.expected
        moved = a.weights > 0
        if routed:
            pair = exp.loc[["eth-usdc", "eth-usdt"]]
            alone = exp.drop(["eth-usdc", "eth-usdt"])
            assert (pair["swap_cost"] >= pair["swap_cost_single_pool"] - 1e-9).all()
            cheaper = pair["swap_cost"] > pair["swap_cost_single_pool"]  # costs are negative
            assert (cheaper & moved.loc[pair.index]).any()
            np.testing.assert_allclose(alone["swap_cost"], alone["swap_cost_single_pool"])
        else:
            np.testing.assert_allclose(exp["swap_cost"], exp["swap_cost_single_pool"])
