"""Allocator inputs as arrays: every route through check_inputs agrees, contagion matches its
all-pools formulation, and the lazily priced reasons equal an explicit explain."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from models.allocation.inputs import (
    AllocationError,
    _effective_stress_all,
    check_inputs,
    effective_stress,
    incidence,
)
from models.allocator import AllocatorConfig, allocate

TOKENS = ["WETH", "USDC", "USDT", "WBTC", "LINK", "DAI"]


def _market(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """Forecasts, current weights and metadata of n random pools."""
    rng = np.random.default_rng(seed)
    pools = [f"pool-{i:03d}" for i in range(n)]
    pairs = [rng.choice(len(TOKENS), 2, replace=False) for _ in pools]
    meta = pd.DataFrame({
        "pool_id": pools, "protocol": rng.choice(["uniswap_v2", "uniswap_v3", "stableswap"], n),
        "chain": rng.choice(["ethereum", "arbitrum"], n),
        "token0": [TOKENS[a] for a, _ in pairs], "token1": [TOKENS[b] for _, b in pairs],
        "fee_tier": rng.choice([0.0005, 0.003, 0.01], n)})
    fee = rng.uniform(1e-4, 2e-3, n)
    fc = pd.DataFrame({"fee_yield": fee, "fee_yield_q10": 0.7 * fee,
                       "tvl_usd": rng.uniform(1e6, 1e8, n), "volatility": rng.uniform(0, 1, n),
                       "p_stress": rng.uniform(0, 0.3, n)}, index=pd.Index(pools, name="pool_id"))
    cur = pd.Series(rng.dirichlet(np.ones(n)) * 0.8, index=pools)
    return fc, cur, meta


def test_every_input_route_prepares_the_same_arrays() -> None:
    fc, cur, meta = _market(30, 0)
    fc.loc["pool-004", "volatility"] = np.nan
    base = check_inputs(fc, cur, meta)
    shuffled = meta.sample(frac=1.0, random_state=1)
    dup = pd.concat([shuffled, shuffled.assign(protocol="stableswap")])  # first row counts
    variants = [
        check_inputs(fc, cur.to_dict(), meta),  # type: ignore[arg-type]  # a mapping
        check_inputs(fc, cur.iloc[::-1], dup),  # weights out of order, duplicated metadata
        check_inputs(fc.astype({"fee_yield": object}), cur, meta.set_index("pool_id")),
    ]
    for pp in variants:
        assert pp.pools == base.pools and pp.frozen == base.frozen == {"pool-004": "volatility"}
        np.testing.assert_array_equal(pp.prev, base.prev)
        for c, v in base.values.items():
            np.testing.assert_array_equal(pp.values[c], v)
        for c in ("protocol", "chain", "token0", "token1", "fee_tier"):
            got, want = pp.meta_column(c), base.meta_column(c)
            assert got is not None and want is not None
            np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
            np.testing.assert_array_equal(pp.meta[c].to_numpy(), got.to_numpy())
        assert list(pp.fc.index) == list(base.pools)


def test_input_errors_name_pool_and_field() -> None:
    fc, cur, meta = _market(8, 1)
    with pytest.raises(AllocationError, match="pool-003.*meta"):
        check_inputs(fc, cur, meta[meta["pool_id"] != "pool-003"])
    with pytest.raises(AllocationError, match="non-numeric.*fee_yield"):
        check_inputs(fc.assign(fee_yield="high"), cur, meta)
    with pytest.raises(AllocationError, match="pool-002.*current_weights"):
        check_inputs(fc, cur.where(cur.index != "pool-002", -0.1), meta)


@pytest.mark.parametrize("seed", range(6))
def test_contagion_matches_the_all_pools_formulation(seed: int) -> None:
    fc, _, meta = _market(40, seed)
    names, _, a = incidence(meta)
    p = fc["p_stress"].to_numpy().copy()
    p[:: 7] = p[1]  # ties at the top of some tokens
    eff, via = effective_stress(p, a, 0.5, names)
    ref_eff, ref_via = _effective_stress_all(p, a, 0.5, names)
    np.testing.assert_array_equal(eff, ref_eff)
    assert via == ref_via
    assert any(via)


def test_lazy_reasons_equal_an_explicit_explain() -> None:
    fc, cur, meta = _market(25, 3)
    cfg = AllocatorConfig(capital_usd=2e6, gas_usd=5.0, max_weight=0.2, max_token_weight=0.5)
    a = allocate(fc, cur, meta, cfg)
    b = allocate(fc, cur, meta, cfg)
    assert a.weights.sum() > 0 and np.isclose(a.weights.to_numpy(), b.weights).all()
    exp, reasons = a.expected, a.reasons
    assert set(reasons) == set(fc.index) and list(exp.index) == list(fc.index)
    assert reasons == b.reasons and exp.equals(b.expected)
    np.testing.assert_allclose(exp["weight"], a.weights.to_numpy(), rtol=0, atol=0)
    assert any("cap" in r for r in reasons.values())


def test_allocation_pickles_with_its_reasons() -> None:
    fc, cur, meta = _market(12, 4)
    a = allocate(fc, cur, meta, AllocatorConfig(capital_usd=1e6, gas_usd=5.0))
    b = pickle.loads(pickle.dumps(a))
    pd.testing.assert_series_equal(b.weights, a.weights)
    assert b.reasons == a.reasons and b.expected.equals(a.expected)
    assert b.fallback_chain == a.fallback_chain


def test_metadata_work_shared_across_decisions_leaves_the_decisions_unchanged() -> None:
    from models.allocation.allocate import allocate_prepared
    from models.allocation.inputs import check_forecasts, share_metadata, with_current

    fc, cur, meta = _market(40, 11)
    cfg = AllocatorConfig(capital_usd=5e6, horizon_years=1 / 365, max_weight=0.2)
    earlier = check_forecasts(fc, meta)
    allocate_prepared(with_current(earlier, cur), cfg)  # fills its metadata memo
    rng = np.random.default_rng(12)
    later_fc = fc.assign(fee_yield=fc["fee_yield"] * rng.uniform(0.5, 1.5, len(fc)),
                         p_stress=rng.uniform(0, 0.3, len(fc)))
    shared = share_metadata(check_forecasts(later_fc, meta), earlier)
    assert ("tokens",) in shared.memo and not any(k[0] == "fixed" for k in shared.memo)
    got = allocate_prepared(with_current(shared, cur), cfg).weights
    want = allocate(later_fc, cur, meta, cfg).weights
    pd.testing.assert_series_equal(got, want, check_exact=True)
    other = share_metadata(check_forecasts(later_fc, meta.copy()), earlier)
    assert ("tokens",) not in other.memo  # another metadata frame: nothing is reused
