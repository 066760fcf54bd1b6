"""What actually happened after each decision: perfect-foresight inputs and the oracle's plan."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.labels import FWD_STRESS
from models.allocation import AllocatorConfig
from models.allocation.inputs import incidence
from models.allocation.oracle import OracleInputs, hindsight_plan
from models.economics.costs import swap_depth_usd
from pipelines.backtest.market import MarketData

__all__ = ["realised_inputs", "oracle_weights"]


def _hold(market: MarketData, i: int, end: int) -> slice:
    """Bars a decision at bar i holds: execution at i + 1 up to (not including) `end`."""
    return slice(i + 1, max(end, i + 2))


def realised_inputs(market: MarketData, i: int, end: int) -> pd.DataFrame:
    """The allocator's inputs at bar i as they turned out over the holding period (hindsight).

    fee_yield is the pool's realised fees over the period / TVL at i, il the realised value
    minus HODL value of one USD held, in_range the realised share in range, active_usd the pool's
    active liquidity when trading, volatility the realised one: fed to the allocator they
    price exactly what the ledger books for a position held through the period.
    """
    sl = _hold(market, i, end)
    tvl = np.nan_to_num(market.tvl[i])
    fees = market.fees[sl].sum(0)
    lp, hodl = np.prod(market.lp_ratio[sl], axis=0), np.prod(market.hodl_ratio[sl], axis=0)
    ret = market.logret[sl]
    years = ret.shape[0] / market.periods_per_year
    vol = np.sqrt(np.nansum(ret * ret, axis=0) / max(years, 1e-12))
    lab = market.labels.get(FWD_STRESS)
    return pd.DataFrame({
        "fee_yield": np.divide(fees, tvl, out=np.zeros_like(fees), where=tvl > 0),
        "tvl_usd": tvl, "volatility": vol,
        "p_stress": np.zeros(len(tvl)) if lab is None else np.nan_to_num(lab[i]),
        "il": lp - hodl,
        "in_range": market.in_range[sl].mean(0),
        "active_usd": market.active_prev[i + 1],
        "liq_per_value": market.liq_per_value[i + 1],
    }, index=pd.Index(market.pools, name="pool_id"))


def oracle_weights(market: MarketData, bars: np.ndarray, cfg: AllocatorConfig,
                   capital_usd: float, objective: str = "net") -> np.ndarray:
    """Hindsight-optimal target weights per decision (decisions x pools) under the caps."""
    k, n = len(bars), len(market.pools)
    growth, hodl, fees, active, m, depth = (np.zeros((k, n)) for _ in range(6))
    for d, i in enumerate(bars):
        end = int(bars[d + 1]) + 1 if d + 1 < k else market.n_bars
        sl = _hold(market, int(i), end)
        growth[d] = np.prod(market.lp_ratio[sl], axis=0)
        hodl[d] = np.prod(market.hodl_ratio[sl], axis=0)
        fees[d] = (market.fees[sl] * market.in_range[sl]).sum(0)
        active[d] = market.active_prev[i + 1]
        m[d] = market.liq_per_value[i + 1]
        depth[d] = swap_depth_usd(market.tvl_prev[i + 1], market.meta["protocol"].to_numpy(),
                                  active_liquidity_usd=market.active_prev[i + 1])
    _, _, inc = incidence(market.meta)
    big = 1e12  # garbled or absurd data must not break the plan's numerics
    growth, hodl, fees, active, depth = (
        np.clip(np.nan_to_num(a, nan=0.0, posinf=big), 0.0, big)
        for a in (growth, hodl, fees, active, depth))
    m = np.clip(np.nan_to_num(m, nan=1.0), 0.0, big)
    o = OracleInputs(growth=growth, hodl=hodl, pool_fees=fees, active=active, m=m, depth=depth,
                     fee_tier=market.fee_tier, tradable=market.available[bars], incidence=inc)
    return hindsight_plan(o, capital_usd, max_weight=cfg.max_weight,
                          max_token_weight=cfg.max_token_weight, max_deploy=cfg.max_deploy,
                          max_turnover=cfg.max_turnover, objective=objective)
