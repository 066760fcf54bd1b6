"""The allocator's flow response: our deposit attracts the pair's flow to the pool it deepens."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.allocation import AllocatorConfig, allocate
from models.allocation.flow_response import allocate_with_flow, flow_multipliers
from tests.test_routing import states

IDS = ["eth-usdc-5", "eth-usdc-30", "btc-eth"]
ROWS = [{"id": "eth-usdc-5", "t0": "WETH", "t1": "USDC", "tvl": 4e6, "fee": 0.0005},
        {"id": "eth-usdc-30", "t0": "WETH", "t1": "USDC", "tvl": 1.2e7, "fee": 0.003},
        {"id": "btc-eth", "t0": "WBTC", "t1": "WETH", "tvl": 5e6, "fee": 0.003}]


def _inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily forecasts and metadata of two WETH/USDC fee tiers and a lone WBTC/WETH pool."""
    fee = np.array([1.2e-3, 1.0e-3, 0.9e-3])
    fc = pd.DataFrame({"fee_yield": fee, "fee_yield_q10": 0.8 * fee,
                       "tvl_usd": [r["tvl"] for r in ROWS], "volatility": [0.5, 0.5, 0.8],
                       "p_stress": [0.002, 0.002, 0.003]}, index=pd.Index(IDS, name="pool_id"))
    meta = pd.DataFrame({"pool_id": IDS, "protocol": "uniswap_v2", "chain": "ethereum",
                         "token0": [r["t0"] for r in ROWS], "token1": [r["t1"] for r in ROWS],
                         "fee_tier": [r["fee"] for r in ROWS]})
    return fc, meta


def test_a_deposit_draws_flow_from_the_pairs_other_pools() -> None:
    st = states(ROWS)
    m = flow_multipliers(st, pd.Series([2e6, 0.0, 1e6], index=IDS))
    assert m["eth-usdc-5"] > 1.0 > m["eth-usdc-30"]
    assert m["btc-eth"] == 1.0  # alone in its pair: no flow to win
    assert flow_multipliers(st, pd.Series(0.0, index=IDS)).eq(1.0).all()
    unknown = flow_multipliers(st, pd.Series([1e6], index=["not-a-pool"]))
    assert unknown.tolist() == [1.0]


def test_flow_response_raises_expected_fees_of_the_pool_we_deepen() -> None:
    fc, meta = _inputs()
    cfg = AllocatorConfig(capital_usd=3e6, gas_usd=5.0, horizon_years=1 / 365,
                          max_weight=0.6, cost_horizons=30.0)
    plain = allocate(fc, None, meta, cfg)
    flow, mult = allocate_with_flow(fc, None, meta, cfg, states(ROWS))
    assert plain.weights["eth-usdc-5"] > 0
    assert mult["eth-usdc-5"] > 1.0
    # the same deposit earns more once it is seen to attract flow; weights stay feasible
    assert flow.weights["eth-usdc-5"] >= plain.weights["eth-usdc-5"] - 1e-6
    per_usd_plain = plain.expected.loc["eth-usdc-5", "fee"] / plain.weights["eth-usdc-5"]
    per_usd_flow = flow.expected.loc["eth-usdc-5", "fee"] / flow.weights["eth-usdc-5"]
    assert per_usd_flow > per_usd_plain
    assert flow.weights.sum() <= 1.0 + 1e-9 and (flow.weights <= 0.6 + 1e-9).all()
    assert mult.loc["btc-eth"] == pytest.approx(1.0)
