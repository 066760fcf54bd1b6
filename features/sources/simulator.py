"""A seeded synthetic market of interconnected AMM pools with calm/stress regimes.

Token prices follow a one-factor model with a Markov calm/stress regime, jumps and token stress
events (crashes; depegs for stablecoins). Every event has a precursor: the token's volatility
ramps up and LPs start leaving its pools hours to days before the onset, so stress is
predictable but not trivially so. Trade demand per pair rises with volatility; a share of it
(ROUTED_FLOW, the aggregator flow) is split across the pair's pools as optimal routing would
split it (`features.amm.FlowSplit`, the flow model of `models.routing`), the rest
follows a depth-and-fee preference (direct traders). LPs chase trailing fee yield with a lag
and flee stressed pools (liquidity crunch). Events spread to every pool that holds the token
(contagion) and raise the volatility of tokens that share a pool with it. Ground truth stays
out of the panel.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from features.amm import STABLE_DEPTH_MULTIPLIER, FlowSplit
from features.schema import (
    CHAIN,
    CLOSE,
    FEE_TIER,
    FEES_USD,
    HIGH,
    LIQUIDITY,
    LOW,
    MISSING,
    OPEN,
    POOL_ID,
    PROTOCOL,
    TIMESTAMP,
    TOKEN0,
    TOKEN0_PRICE_USD,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
    TX_COUNT,
    VOLUME_USD,
    Panel,
    validate_panel,
)
from features.sources._sim_market import (
    CHAINS,
    PAIRS,
    STABLE,
    STABLE_VENUES,
    TOKENS,
    VOLATILE_VENUES,
    PoolSpec,
    markov_regime,
    pool_universe,
    token_events,
    token_prices,
)

__all__ = ["simulate_market"]

START = pd.Timestamp("2024-01-01", tz="UTC")
# share of a pair's trade flow that aggregators route optimally across its pools (a judgement
# call, near the aggregator share of DEX volume); the rest trades directly on one pool
ROUTED_FLOW = 0.6


def simulate_market(
    n_pools: int = 30, days: int = 180, seed: int = 0, freq: str = "1h"
) -> tuple[Panel, pd.DataFrame]:
    """Simulate n_pools pools for days; return the validated panel and the ground truth.

    Parameters
    ----------
    n_pools : number of pools (pairs x fee tiers x protocols, then copies on other chains;
        past the distinct ones, further deployments of them with ids suffixed ``#2``, ...)
    days : length of history in days
    seed : random seed; the same seed gives identical frames
    freq : "1h" or "1d" (daily aggregates flows by sum and states by last value)
    """
    if n_pools < 1 or days < 2:
        raise ValueError(f"need n_pools >= 1 and days >= 2, got {n_pools} pools, {days} days")
    rng = np.random.default_rng(seed)
    specs = _universe(n_pools)
    n, m, k = days * 24, len(specs), len(TOKENS)
    tix = {s: i for i, s in enumerate(TOKENS)}
    i0 = np.array([tix[s.token0] for s in specs])
    i1 = np.array([tix[s.token1] for s in specs])
    fee = np.array([s.fee_tier for s in specs])
    proto = np.array([s.protocol for s in specs])
    member = np.zeros((m, k))
    member[np.arange(m), i0] = 1
    member[np.arange(m), i1] = 1
    adjacency = ((member.T @ member) > 0).astype(float)
    np.fill_diagonal(adjacency, 0)

    regime = markov_regime(rng, n, p_enter=1 / (24 * 40), p_exit=1 / (24 * 4))
    stable = np.array([s in STABLE for s in TOKENS])
    ev = token_events(rng, regime, k, stable)
    px, vmult = token_prices(rng, regime, ev, adjacency)

    p0, p1 = px[:, i0], px[:, i1]
    pool_mult = np.maximum(vmult[:, i0], vmult[:, i1])
    precursor = np.maximum(ev.precursor[:, i0], ev.precursor[:, i1])
    stressed = ev.active[:, i0] | ev.active[:, i1]
    depeg = (ev.active & stable)[:, i0] | (ev.active & stable)[:, i1]

    # depth: deeper for low-fee v3 and stable pools; copies on other chains are shallower
    chain_scale = np.array([1.0 if s.chain == "ethereum" else 0.25 for s in specs])
    venue_scale = np.where(proto == "uniswap_v2", 0.5, 1.0) * np.where(fee >= 0.01, 0.2, 1.0)
    tvl0 = 2e7 * chain_scale * venue_scale * np.exp(rng.normal(0, 0.6, m))
    pair_key = np.array([f"{s.chain}|{s.pair}" for s in specs])
    _, pair = np.unique(pair_key, return_inverse=True)
    n_pairs = int(pair.max()) + 1
    turnover = np.where(stable[i0] & stable[i1], 0.6, 0.25) / 24  # per hour, of pair TVL
    base_demand = np.bincount(pair, tvl0 * turnover, n_pairs)[pair] / np.maximum(
        np.bincount(pair, minlength=n_pairs)[pair], 1)
    hours = np.arange(n)
    diurnal = 1 + 0.3 * np.sin(2 * np.pi * (hours % 24) / 24)
    noise = np.exp(rng.normal(0, 0.35, (n, m)) - 0.35**2 / 2)
    demand_mult = diurnal[:, None] * noise * (1 + 1.5 * (pool_mult - 1))

    tvl = np.empty((n, m))
    vol = np.empty((n, m))
    flow_noise = rng.normal(0, 0.002, (n, m))
    value_ratio = np.sqrt((p0 / np.vstack([p0[:1], p0[:-1]])) * (p1 / np.vstack([p1[:1], p1[:-1]])))
    cum_vr = np.cumprod(value_ratio, axis=0)
    cur = tvl0.copy()
    trail = np.full(m, 0.0)
    pair_count = np.bincount(pair, minlength=n_pairs)
    eff = np.where(proto == "uniswap_v3", 4.0, 1.0)  # v3 pools' range efficiency
    depth_per_tvl = 0.5 * np.where(proto == "stableswap", STABLE_DEPTH_MULTIPLIER, eff)
    routed_shares = FlowSplit(fee, pair)
    for t in range(n):
        cur = cur * value_ratio[t]
        score = 0.9 * np.log(cur) - fee * 1e4 / 25.0
        w = np.exp(score - score.max())
        share = (ROUTED_FLOW * routed_shares(cur * depth_per_tvl)
                 + (1.0 - ROUTED_FLOW) * w / np.bincount(pair, w, n_pairs)[pair])
        v = base_demand * pair_count[pair] * share * demand_mult[t]
        vol[t] = v
        y = v * fee / cur
        trail = 0.98 * trail + 0.02 * y
        if t >= 24:  # LPs react to trailing yield with a lag, relative to the market average
            chase = 4.0 * (trail - trail.mean()) / (trail.mean() + 1e-12) * 1e-3
        else:
            chase = np.zeros(m)
        flee = -0.004 * precursor[t] - 0.012 * stressed[t]
        # slow mean reversion of TVL towards its price-adjusted starting depth
        recover = 0.0015 * (tvl0 * cum_vr[t] / cur - 1) if t % 24 == 0 else 0.0
        cur = cur * np.exp(np.clip(chase, -0.01, 0.01) + flee + flow_noise[t] + recover)
        tvl[t] = cur

    price = p0 / p1
    prev = np.vstack([price[:1], price[:-1]])
    wig = np.abs(rng.normal(0, 1, (n, m))) * 0.004 * pool_mult
    high = np.maximum(prev, price) * np.exp(wig)
    low = np.minimum(prev, price) * np.exp(-np.abs(rng.normal(0, 1, (n, m))) * 0.004 * pool_mult)
    fees = vol * fee
    tx = np.round(vol / rng.uniform(3e3, 2e4, m))
    liq = tvl / (2 * np.sqrt(p0 * p1)) * eff

    ts = pd.date_range(START, periods=n, freq="h")
    cols = {OPEN: prev, HIGH: high, LOW: low, CLOSE: price, VOLUME_USD: vol, FEES_USD: fees,
            TVL_USD: tvl, TOKEN0_PRICE_USD: p0, TOKEN1_PRICE_USD: p1, LIQUIDITY: liq,
            TX_COUNT: tx}
    truth_cols = {"regime": np.repeat(regime[:, None], m, axis=1), "stress": stressed,
                  "depeg": depeg}
    if freq == "1d":
        cols, truth_cols, ts = _daily(cols, truth_cols, days)
    elif freq != "1h":
        raise ValueError(f"unknown frequency {freq!r}; expected '1h' or '1d'")
    ids = np.array([s.pool_id for s in specs])
    order = np.argsort(ids, kind="stable")
    nt = len(ts)

    def long(a: np.ndarray) -> np.ndarray:
        return a[:, order].T.reshape(-1)

    frame = pd.DataFrame({POOL_ID: np.repeat(ids[order], nt), TIMESTAMP: np.tile(ts, m)})
    for c, a in cols.items():
        frame[c] = long(a).astype(float)
    frame[MISSING] = False
    meta = pd.DataFrame({POOL_ID: ids, PROTOCOL: proto, CHAIN: [s.chain for s in specs],
                         TOKEN0: [s.token0 for s in specs], TOKEN1: [s.token1 for s in specs],
                         FEE_TIER: fee})
    frame = validate_panel(frame, meta, freq, source=f"simulator(seed={seed})")
    truth = frame[[POOL_ID, TIMESTAMP]].copy()
    truth["regime"] = long(truth_cols["regime"]).astype(int)
    truth["stress"] = long(truth_cols["stress"]).astype(bool)
    truth["depeg"] = long(truth_cols["depeg"]).astype(bool)
    info = {"seed": seed, "days": days, "simulated": True}
    return Panel(frame=frame, meta=meta, freq=freq, source=f"simulator(seed={seed})",
                 info=info), truth


def _universe(n_pools: int) -> list[PoolSpec]:
    """n_pools pool specs: the distinct pools of ``pool_universe`` (pairs x venues x chains),
    then further deployments of the same pools on the same chains (``<pool_id>#2``, ...)."""
    # every distinct pool fits in this bound, which keeps pool_universe's search short
    bound = len(CHAINS) * len(PAIRS) * max(len(VOLATILE_VENUES), len(STABLE_VENUES))
    base = pool_universe(min(n_pools, bound))
    specs = list(base)
    copy = 2
    while len(specs) < n_pools:
        specs += [replace(s, pool_id=f"{s.pool_id}#{copy}") for s in base[:n_pools - len(specs)]]
        copy += 1
    return specs


def _daily(
    cols: dict[str, np.ndarray], truth: dict[str, np.ndarray], days: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], pd.DatetimeIndex]:
    """Aggregate hourly arrays to days: flows summed, states last, high max, low min."""

    def r(a: np.ndarray) -> np.ndarray:
        return a.reshape(days, 24, a.shape[1])

    out = {
        OPEN: r(cols[OPEN])[:, 0], HIGH: r(cols[HIGH]).max(1), LOW: r(cols[LOW]).min(1),
        CLOSE: r(cols[CLOSE])[:, -1], VOLUME_USD: r(cols[VOLUME_USD]).sum(1),
        FEES_USD: r(cols[FEES_USD]).sum(1), TX_COUNT: r(cols[TX_COUNT]).sum(1),
        TVL_USD: r(cols[TVL_USD])[:, -1], TOKEN0_PRICE_USD: r(cols[TOKEN0_PRICE_USD])[:, -1],
        TOKEN1_PRICE_USD: r(cols[TOKEN1_PRICE_USD])[:, -1], LIQUIDITY: r(cols[LIQUIDITY])[:, -1],
    }
    tr = {"regime": r(truth["regime"]).max(1), "stress": r(truth["stress"]).any(1),
          "depeg": r(truth["depeg"]).any(1)}
    return out, tr, pd.date_range(START, periods=days, freq="D")
