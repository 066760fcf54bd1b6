"""What actually happened after each decision: perfect-foresight inputs and the oracle's plan."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.labels import FWD_STRESS
from models.allocation import AllocatorConfig
from models.allocation.inputs import incidence
from models.allocation.oracle import OracleInputs, Plan, hindsight_plan
from models.routing.bounds import zap_cost_floor
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


_ACTIVE_FLOOR = 1e-6  # USD: active liquidity below this counts as this (fee share ~ 1)


def _period_terms(market: MarketData, sl: slice
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Growth, ledger IL, in-range pool fees and fee-weighted liquidity ratio of one USD held
    through the bars `sl` (the ledger's per-bar split and dilution)."""
    lp, hodl = market.lp_ratio[sl], market.hodl_ratio[sl]
    before = np.vstack([np.ones((1, lp.shape[1])), np.cumprod(lp, axis=0)[:-1]])
    il = (before * (lp - hodl)).sum(0)
    w = market.fees[sl] * market.in_range[sl]
    active = np.nan_to_num(market.active_prev[sl], nan=0.0)
    ratio = before * market.liq_per_value[sl] / np.maximum(active, _ACTIVE_FLOOR)
    tot = w.sum(0)
    kz = np.where(tot > 0, (w * ratio).sum(0) / np.where(tot > 0, tot, 1.0), ratio[0])
    return np.prod(lp, axis=0), il, tot, kz


def oracle_weights(market: MarketData, bars: np.ndarray, cfg: AllocatorConfig,
                   capital_usd: float, objective: str = "net") -> Plan:
    """The hindsight-optimal plan (weights per decision and pool, and its bound) under the
    caps, on the ledger's own per-bar economics."""
    k, n = len(bars), len(market.pools)
    growth, il, fees, kz, lin, quad, depth = (np.zeros((k, n)) for _ in range(7))
    t0, t1, ch = (market.names(c) for c in ("token0", "token1", "chain"))
    for d, i in enumerate(bars):
        end = int(bars[d + 1]) + 1 if d + 1 < k else market.n_bars
        growth[d], il[d], fees[d], kz[d] = _period_terms(market, _hold(market, int(i), end))
        e = int(i) + 1
        if e < market.n_bars:
            floor = zap_cost_floor(market.pool_states(e), market.pools, t0, t1, ch,
                                   market.swap_depth(e), market.fee_tier)
            lin[d], quad[d], depth[d] = floor.lin, floor.quad, floor.depth
    _, _, inc = incidence(market.meta)
    big = 1e12  # garbled or absurd data must not break the plan's numerics
    growth, fees, depth = (np.clip(np.nan_to_num(a, nan=0.0, posinf=big), 0.0, big)
                           for a in (growth, fees, depth))
    il = np.clip(np.nan_to_num(il, nan=0.0), -big, big)
    kz = np.clip(np.nan_to_num(kz, nan=0.0, posinf=1.0), 0.0, 1.0)
    lin, quad = (np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) for a in (lin, quad))
    o = OracleInputs(growth=growth, il=il, pool_fees=fees, kz=kz, cost_lin=lin, cost_quad=quad,
                     cost_depth=depth, tradable=market.available[bars], incidence=inc)
    return hindsight_plan(o, capital_usd, max_weight=cfg.max_weight,
                          max_token_weight=cfg.max_token_weight, max_deploy=cfg.max_deploy,
                          max_turnover=cfg.max_turnover, objective=objective)
