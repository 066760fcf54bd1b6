"""Per-pool economics of a decision, priced by the economics core: what the allocator optimises.

`coefficients` turns validated forecasts into the convex program's per-unit-weight terms;
`pool_pnl` prices any weight vector exactly (diluted fees, IL, stress, swap fee, impact, gas)
with the same functions the backtest books realised P&L with.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from models.allocation.config import AllocatorConfig
from models.allocation.inputs import Prepared, effective_stress
from models.economics.concentrated import centred_range, range_efficiency
from models.economics.costs import (
    GAS_USD,
    gas_usd,
    pair_swap_terms,
    rebalance_cost,
    swap_depth_usd,
)
from models.economics.fees import FEE_SHARE_FROM_TVL, diluted_fees
from models.economics.lvr import lvr_fraction
from models.economics.paths import pool_efficiency

__all__ = ["Coefficients", "coefficients", "pool_pnl", "expected_in_range"]

CONCENTRATED = "uniswap_v3"


def expected_in_range(volatility: np.ndarray, years: float, width: float) -> np.ndarray:
    """Expected share of a horizon a centred range stays in range (Brownian log price).

    Approximation: the probability of being inside [-log(1 + width), log(1 + width)] at half
    the horizon, 2 Phi(b / (sigma sqrt(H / 2))) - 1 = erf(b / (sigma sqrt(H))).
    """
    b = np.log1p(width)
    s = np.asarray(volatility, float) * np.sqrt(years)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(s > 0, erf(b / np.where(s > 0, s, 1.0)), 1.0))


@dataclass
class Coefficients:
    """Per-pool inputs and convex-program terms of one decision (arrays over pools)."""

    pool_fees: np.ndarray  # expected pool fees over the horizon, USD (f x T)
    tvl: np.ndarray
    active: np.ndarray  # pool active liquidity, full-range USD
    m: np.ndarray  # our liquidity per USD of position (full-range units)
    in_range: np.ndarray
    il_rate: np.ndarray  # expected LP minus HODL value per USD over the horizon
    lvr_rate: np.ndarray  # LVR estimate per USD (>= 0, reported)
    stress_rate: np.ndarray  # p_eff x stress_loss
    spread_rate: np.ndarray  # risk_aversion x fee spread per USD
    depth: np.ndarray
    fee_tier: np.ndarray
    swap_depth: np.ndarray  # depth and fee a zap's swap is priced with (routed estimate or own)
    swap_fee: np.ndarray
    gas: np.ndarray
    chains: np.ndarray
    p_own: np.ndarray
    p_eff: np.ndarray
    via: np.ndarray
    incidence: np.ndarray
    tokens: np.ndarray
    token_key: tuple[tuple[str, ...], ...]
    source: np.ndarray
    # convex program terms, per unit weight
    fee_lin: np.ndarray
    fee_conc: np.ndarray
    k: np.ndarray
    lin: np.ndarray
    cost_lin: np.ndarray
    cost_quad: np.ndarray


def _col(values: dict[str, np.ndarray], name: str, default: np.ndarray) -> np.ndarray:
    """Optional forecast column as floats, `default` where absent or non-finite."""
    if name not in values:
        return default
    v = values[name]
    return np.where(np.isfinite(v), v, default)


@dataclass(frozen=True)
class _Fixed:
    """The part of the coefficients that does not depend on capital, risk or stress loss."""

    proto: np.ndarray
    tiers: np.ndarray
    chains: np.ndarray
    f: np.ndarray
    tvl: np.ndarray
    m: np.ndarray
    pi: np.ndarray
    active: np.ndarray
    lvr: np.ndarray
    il: np.ndarray
    q10: np.ndarray
    p_own: np.ndarray
    p_eff: np.ndarray
    via: np.ndarray
    pool_fees: np.ndarray
    share_lin: np.ndarray
    depth: np.ndarray
    swap_depth: np.ndarray
    swap_fee: np.ndarray
    gas: np.ndarray
    source: np.ndarray


def _gas_key(gas: float | Mapping[str, float] | None) -> Hashable:
    """A hashable form of the gas setting."""
    return tuple(sorted(gas.items())) if isinstance(gas, Mapping) else gas


def _fixed(pp: Prepared, cfg: AllocatorConfig,
           tokens: tuple[list[str], np.ndarray] | None = None) -> _Fixed:
    """Pool economics that depend on the forecasts, horizon, range width, contagion and gas.

    Kept in ``pp.memo`` unless ``tokens`` (names, incidence) replaces the pools' own.
    """
    key = ("fixed", cfg.horizon_years, cfg.v3_width, cfg.contagion, _gas_key(cfg.gas_usd),
           cfg.routed_costs)
    hit = pp.memo.get(key) if tokens is None else None
    if isinstance(hit, _Fixed):
        return hit
    fc, H, n = pp.values, cfg.horizon_years, len(pp.pools)
    if tokens is None:
        names, _, inc = pp.token_incidence()
    else:
        names, inc = tokens
    protocol, tier, chain = (pp.meta_values(c, k) for c, k in (
        ("protocol", "str"), ("fee_tier", "float"), ("chain", "str")))
    proto = protocol if protocol is not None else np.array(["uniswap_v2"] * n)
    tiers = tier if tier is not None else np.zeros(n)
    chains = chain if chain is not None else np.array([""] * n)
    conc = proto == CONCENTRATED
    f = np.clip(np.nan_to_num(fc["fee_yield"]), 0.0, None)
    tvl = np.clip(np.nan_to_num(fc["tvl_usd"]), 0.0, None)
    vol = np.nan_to_num(fc["volatility"])
    lower, upper = centred_range(1.0, cfg.v3_width)
    m = _col(fc, "liq_per_value", np.where(conc, float(range_efficiency(1.0, lower, upper)),
                                           1.0))
    pi = _col(fc, "in_range", np.where(conc, expected_in_range(vol, H, cfg.v3_width), 1.0))
    active = _col(fc, "active_usd", tvl * pool_efficiency(proto, tiers))
    lvr = lvr_fraction(vol, H, m, pi)
    p_own = np.nan_to_num(fc["p_stress"])
    p_eff, via = effective_stress(p_own, inc, cfg.contagion, names)
    safe_a = np.where(active > 0, active, 1.0)
    source = _col(fc, "active_usd", np.full(n, np.nan))
    gas_table = GAS_USD if cfg.gas_usd is None else cfg.gas_usd
    depth = swap_depth_usd(tvl, proto, active_liquidity_usd=active)
    t0, t1 = pp.meta_values("token0", "str"), pp.meta_values("token1", "str")
    if cfg.routed_costs and t0 is not None and t1 is not None:
        swap_depth, swap_fee = pair_swap_terms(chains, t0, t1, depth, tiers)
    else:
        swap_depth, swap_fee = depth, tiers
    fixed = _Fixed(
        proto=proto, tiers=tiers, chains=chains, f=f, tvl=tvl, m=m, pi=pi, active=active,
        lvr=lvr, il=_col(fc, "il", -lvr), q10=_col(fc, "fee_yield_q10", f), p_own=p_own,
        p_eff=p_eff, via=np.array(via, dtype=object), pool_fees=f * tvl,
        share_lin=np.where(active > 0, pi * m / safe_a, 0.0),  # fee per USD, first dollar
        depth=depth, swap_depth=swap_depth, swap_fee=swap_fee,
        gas=np.asarray(gas_usd(chains, gas_table), float),
        source=np.where(np.isfinite(source), "forecast", FEE_SHARE_FROM_TVL))
    for v in vars(fixed).values():
        v.setflags(write=False)
    if tokens is None:
        if len(pp.memo) > 64:  # a few horizons / settings per pool set: bounded all the same
            pp.memo.clear()
        pp.memo[key] = fixed
    return fixed


def coefficients(pp: Prepared, cfg: AllocatorConfig, names: list[str] | None = None,
                 inc: np.ndarray | None = None,
                 token_key: tuple[tuple[str, ...], ...] | None = None) -> Coefficients:
    """Economics of each pool for this decision, from validated forecasts and metadata.

    Tokens (``names``, the tokens x pools ``inc``, each pool's ``token_key``) default to the
    pools' own metadata; what does not depend on the capital, risk aversion or stress loss is
    then computed once per prepared pool set and setting (kept in ``pp.memo``).
    """
    E = cfg.capital_usd
    if names is None or inc is None:
        names, own_key, inc = pp.token_incidence()
        x = _fixed(pp, cfg)
        token_key = own_key if token_key is None else token_key
    else:
        x = _fixed(pp, cfg, (names, inc))
        token_key = _token_key(names, inc, len(pp.pools)) if token_key is None else token_key
    active, depth = x.active, x.swap_depth
    safe_a = np.where(active > 0, active, 1.0)
    spread = cfg.risk_aversion * np.clip(x.f - x.q10, 0.0, None) * x.tvl * x.share_lin
    stress = x.p_eff * cfg.stress_loss
    safe_d = np.where(depth > 0, depth, 1.0)
    return Coefficients(
        pool_fees=x.pool_fees, tvl=x.tvl, active=active, m=x.m, in_range=x.pi, il_rate=x.il,
        lvr_rate=x.lvr, stress_rate=stress, spread_rate=spread, depth=x.depth,
        fee_tier=x.tiers, swap_depth=depth, swap_fee=x.swap_fee, gas=x.gas, chains=x.chains,
        p_own=x.p_own, p_eff=x.p_eff,
        via=x.via, incidence=inc, tokens=np.array(names, dtype=object), token_key=token_key,
        source=x.source, fee_lin=x.pool_fees * x.share_lin,
        fee_conc=np.where(active > 0, x.pool_fees * x.pi / E, 0.0),
        k=np.where(active > 0, x.m * E / safe_a, 0.0),
        lin=-x.il + stress + spread,
        cost_lin=0.5 * x.swap_fee, cost_quad=np.where(depth > 0, E / (4.0 * safe_d), 0.0))


def _token_key(names: list[str], inc: np.ndarray, n: int) -> tuple[tuple[str, ...], ...]:
    """Tokens of each pool, in the order of ``names``."""
    if not inc.size:
        return tuple(() for _ in range(n))
    held: list[list[str]] = [[] for _ in range(n)]
    tok, pool = np.nonzero(inc > 0)  # token-major: each pool's tokens in names order
    for i, j in zip(tok.tolist(), pool.tolist(), strict=True):
        held[j].append(str(names[i]))
    return tuple(tuple(h) for h in held)


def pool_pnl(w: np.ndarray, co: Coefficients, prev: np.ndarray, cfg: AllocatorConfig,
             with_gas: bool = True) -> dict[str, np.ndarray]:
    """Expected USD per pool over the horizon of holding weights w, moved from prev."""
    x = np.asarray(w, float) * cfg.capital_usd
    delta = x - np.asarray(prev, float) * cfg.capital_usd
    fee = diluted_fees(co.pool_fees, co.active, x * co.m, co.in_range)
    gas, swap_fee, impact = rebalance_cost(delta, co.swap_depth, co.swap_fee, co.chains,
                                           GAS_USD if cfg.gas_usd is None else cfg.gas_usd,
                                           min_move_usd=_NO_MOVE)
    gas = gas if with_gas else np.zeros_like(gas)
    if co.swap_depth is co.depth and co.swap_fee is co.fee_tier:
        single = swap_fee + impact
    else:  # the same move through each pool alone, for the report
        _, f1, i1 = rebalance_cost(delta, co.depth, co.fee_tier, min_move_usd=_NO_MOVE)
        single = f1 + i1
    cost = (gas + swap_fee + impact) / cfg.cost_horizons
    il, stress, spread = co.il_rate * x, -co.stress_rate * x, -co.spread_rate * x
    return {"fee": fee, "il": il, "lvr": -co.lvr_rate * x, "stress_loss": stress,
            "risk": spread, "gas": -gas, "swap_cost": -(swap_fee + impact),
            "swap_cost_single_pool": -single, "cost": -cost,
            "net": fee + il + stress + spread - cost}


_NO_MOVE = 0.01  # USD: moves this small are round-off and cost nothing
