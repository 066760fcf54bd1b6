"""Pool states for routing: the latest row of each pool turned into tradable reserves.

Conventions
-----------
price : token1 per token0 in human units (the panel's `close`).
Reserves : token units. Every pool trades as a constant function market maker on *virtual*
reserves (R0, R1) with R1 / R0 = price, paying the fee tier on the input:
- uniswap_v2: constant product on the real reserves, one side worth TVL / 2
  (`costs.swap_depth_usd`).
- uniswap_v3: constant product on the virtual reserves of the current range, x = L / sqrt(P),
  y = L sqrt(P). L is the panel's active `liquidity` (raw, made human with the metadata's
  decimals) where both exist, else the documented approximation of the economics core: active
  liquidity ~ TVL x `paths.pool_efficiency`, one side of depth `swap_depth_usd`. The active
  liquidity is taken as constant across ticks (the tick map is not in the panel), and the
  output is capped by the real reserves, TVL / 2 per side (the pool cannot give more than it
  holds; its real composition is not in the panel either).
- stableswap: approximated as constant product with the depth of `swap_depth_usd`
  (STABLE_DEPTH_MULTIPLIER x TVL / 2 per side), capped by the real reserves (TVL / 2 per side):
  flat near the peg, exhausted once a side is drained.
- weighted: the Balancer invariant R0**w0 R1**(1 - w0) exactly, reserves w0 TVL and
  (1 - w0) TVL, `weight0` from the metadata (0.5 when absent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from features.schema import (
    CHAIN,
    CLOSE,
    DECIMALS0,
    DECIMALS1,
    FEE_TIER,
    LIQUIDITY,
    MISSING,
    POOL_ID,
    PROTOCOL,
    TIMESTAMP,
    TOKEN0,
    TOKEN0_PRICE_USD,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
)
from models.economics.concentrated import full_range_value, human_liquidity
from models.economics.costs import swap_depth_usd
from models.economics.fees import FEE_SHARE_FROM_LIQUIDITY, FEE_SHARE_FROM_TVL, usd_liquidity
from models.economics.invariants import STABLESWAP, UNISWAP_V3, WEIGHTED
from models.economics.paths import pool_efficiency

__all__ = ["PoolStates", "RoutingError", "UnknownTokenError", "NoRouteError",
           "DEPTH_RESERVES"]

DEPTH_RESERVES = "reserves"  # depth source of v2 / weighted / stableswap pools: TVL reserves


class RoutingError(ValueError):
    """A trade the router cannot serve (names the token, pool or amount at fault)."""


class UnknownTokenError(RoutingError):
    """A token that no pool holds; lists the tokens that are known."""

    def __init__(self, token: str, known: list[str], role: str = "token") -> None:
        self.token, self.known = token, known
        super().__init__(f"unknown {role} {token!r}: no stored pool holds it; known tokens: "
                         f"{', '.join(known) if known else '(none)'}")


class NoRouteError(RoutingError):
    """Two known tokens that no chain of pools joins within the hop limit."""


def _col(df: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    """A numeric column as float array (default where absent)."""
    if name not in df.columns:
        return np.full(len(df), default)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(float)


@dataclass(frozen=True)
class PoolStates:
    """The tradable state of many pools, one entry per pool (numpy arrays, aligned).

    pool_id, protocol, chain, token0, token1 : names.
    fee_tier : swap fee, fraction. price : token1 per token0.
    tvl_usd : TVL, USD. token0_usd, token1_usd : USD prices.
    active_usd : active liquidity in full-range USD (v3; TVL elsewhere).
    liquidity : human active liquidity L of v3 pools from the panel (NaN where unknown).
    weight0 : token0 weight (weighted pools; 0.5 elsewhere).
    depth_source : "liquidity" | "tvl_approx" | "reserves" per pool.
    timestamp : time of the row each state comes from.
    skipped : pool id -> why it has no state (no usable row, zero TVL, ...).
    """

    pool_id: np.ndarray
    protocol: np.ndarray
    chain: np.ndarray
    token0: np.ndarray
    token1: np.ndarray
    fee_tier: np.ndarray
    price: np.ndarray
    tvl_usd: np.ndarray
    token0_usd: np.ndarray
    token1_usd: np.ndarray
    active_usd: np.ndarray
    liquidity: np.ndarray
    weight0: np.ndarray
    depth_source: np.ndarray
    timestamp: np.ndarray
    skipped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pool_id)

    @classmethod
    def from_panel(cls, frame: pd.DataFrame, meta: pd.DataFrame, *,
                   at: Any = None) -> PoolStates:
        """States from each pool's latest usable row at or before `at` (None: the last row).

        Parameters
        ----------
        frame : panel rows (any number per pool; only rows at or before `at` are read).
        meta : pool metadata (`pool_id, protocol, chain, token0, token1, fee_tier`; optional
            `decimals0, decimals1, weight0`).
        at : timestamp of the state (naive: UTC); nothing after it is read.

        A usable row is not flagged missing and has a positive finite close, TVL and USD
        prices; pools without one are listed in `skipped`.
        """
        f = frame
        if at is not None:
            when = pd.Timestamp(at)
            when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
            f = f[f[TIMESTAMP] <= when]
        ok = np.ones(len(f), bool)
        for c in (CLOSE, TVL_USD, TOKEN0_PRICE_USD, TOKEN1_PRICE_USD):
            v = _col(f, c)
            ok &= np.isfinite(v) & (v > 0)
        if MISSING in f.columns:
            ok &= ~f[MISSING].fillna(True).astype(bool).to_numpy()
        rows = f[ok].groupby(POOL_ID, sort=False).tail(1).set_index(POOL_ID)
        m = meta.assign(**{POOL_ID: meta[POOL_ID].astype(str)})
        skipped = {pid: "no row with a positive close, TVL and USD prices"
                   for pid in m[POOL_ID] if pid not in rows.index}
        m = m[m[POOL_ID].isin(rows.index)].reset_index(drop=True)
        r = rows.loc[m[POOL_ID]].reset_index()
        proto = m[PROTOCOL].astype(str).to_numpy()
        fee = m[FEE_TIER].to_numpy(float)
        price, tvl = _col(r, CLOSE), _col(r, TVL_USD)
        t0, t1 = _col(r, TOKEN0_PRICE_USD), _col(r, TOKEN1_PRICE_USD)
        liq = np.full(len(m), np.nan)
        if LIQUIDITY in r.columns and {DECIMALS0, DECIMALS1} <= set(m.columns):
            d0, d1 = _col(m, DECIMALS0), _col(m, DECIMALS1)
            raw = _col(r, LIQUIDITY)
            use = (proto == UNISWAP_V3) & np.isfinite(raw) & (raw > 0) & np.isfinite(d0 + d1)
            liq[use] = human_liquidity(raw[use], d0[use], d1[use])  # type: ignore[arg-type]
        has_l = np.isfinite(liq)
        active = np.where(has_l, full_range_value(np.nan_to_num(liq), price) * t1,
                          usd_liquidity(tvl, pool_efficiency(proto, fee)))
        source = np.where(proto == UNISWAP_V3,
                          np.where(has_l, FEE_SHARE_FROM_LIQUIDITY, FEE_SHARE_FROM_TVL),
                          DEPTH_RESERVES)
        w0 = np.where(proto == WEIGHTED, np.nan_to_num(_col(m, "weight0", 0.5), nan=0.5), 0.5)
        return cls(
            pool_id=m[POOL_ID].to_numpy(object), protocol=proto.astype(object),
            chain=m[CHAIN].astype(str).to_numpy(object),
            token0=m[TOKEN0].astype(str).to_numpy(object),
            token1=m[TOKEN1].astype(str).to_numpy(object), fee_tier=fee, price=price,
            tvl_usd=tvl, token0_usd=t0, token1_usd=t1, active_usd=active, liquidity=liq,
            weight0=w0, depth_source=source.astype(object),
            timestamp=r[TIMESTAMP].to_numpy() if TIMESTAMP in r.columns
            else np.full(len(m), np.datetime64("NaT")),
            skipped=skipped)

    # --- derived quantities -------------------------------------------------------------
    @property
    def tokens(self) -> list[str]:
        """Every token held by some pool, sorted."""
        return sorted(set(self.token0.tolist()) | set(self.token1.tolist()))

    def depth_usd(self) -> np.ndarray:
        """One side's (virtual) swap depth per pool, USD (`costs.swap_depth_usd`)."""
        return swap_depth_usd(self.tvl_usd, self.protocol.astype(str),
                              active_liquidity_usd=self.active_usd, weight0=self.weight0)

    def _align(self) -> np.ndarray:
        """Factor c with (D1 / c) / (D0 c) = price for USD-derived reserves D0, D1."""
        return np.sqrt(self.token0_usd / (self.token1_usd * self.price))

    def reserves(self) -> tuple[np.ndarray, np.ndarray]:
        """Virtual reserves (R0, R1) per pool in token units, R1 / R0 = price (weighted:
        (R1 / w1) / (R0 / w0) = price)."""
        return self._reserves

    @cached_property
    def _reserves(self) -> tuple[np.ndarray, np.ndarray]:
        c = self._align()
        w0 = self.weight0
        weighted = self.protocol == WEIGHTED
        side = np.where(weighted, 1.0, self.depth_usd())
        s0 = np.where(weighted, w0 * self.tvl_usd, side)
        s1 = np.where(weighted, (1.0 - w0) * self.tvl_usd, side)
        r0, r1 = s0 / self.token0_usd * c, s1 / self.token1_usd / c
        has_l = np.isfinite(self.liquidity)
        sp = np.sqrt(self.price)
        return (np.where(has_l, self.liquidity / sp, r0), np.where(has_l, self.liquidity * sp, r1))

    def caps(self) -> tuple[np.ndarray, np.ndarray]:
        """Most of token0 / token1 a pool can pay out (real reserves; inf where the virtual
        reserves are the real ones: v2 and weighted pools)."""
        return self._caps

    @cached_property
    def _caps(self) -> tuple[np.ndarray, np.ndarray]:
        c = self._align()
        half = 0.5 * self.tvl_usd
        capped = np.isin(self.protocol.astype(str), [UNISWAP_V3, STABLESWAP])
        return (np.where(capped, half / self.token0_usd * c, np.inf),
                np.where(capped, half / self.token1_usd / c, np.inf))

    def token_usd(self) -> dict[str, float]:
        """USD price per token: the median over the pools holding it."""
        return dict(self._token_usd)

    @cached_property
    def _token_usd(self) -> dict[str, float]:
        names = np.concatenate([self.token0, self.token1]).astype(str)
        usd = np.concatenate([self.token0_usd, self.token1_usd])
        return {t: float(np.median(usd[names == t])) for t in np.unique(names).tolist()}

    # --- selections ---------------------------------------------------------------------
    def subset(self, mask: ArrayLike) -> PoolStates:
        """The states of the pools where `mask` (bool per pool, or integer positions) holds."""
        idx = np.asarray(mask)
        if idx.dtype != bool:
            idx = np.isin(np.arange(len(self)), idx)
        arrays = {k: getattr(self, k)[idx] for k in self.__dataclass_fields__ if k != "skipped"}
        return replace(self, **arrays)

    def select(self, pool_ids: list[str]) -> PoolStates:
        """The states of the named pools, in the order given; raise naming an unknown id."""
        pos = {p: i for i, p in enumerate(self.pool_id.tolist())}
        missing = [p for p in pool_ids if p not in pos]
        if missing:
            why = [f"{p} ({self.skipped[p]})" for p in missing if p in self.skipped]
            raise RoutingError(f"no state for pool(s) {missing}"
                               + (f": {'; '.join(why)}" if why else "")
                               + f"; pools with a state: {self.pool_id.tolist()}")
        take = np.array([pos[p] for p in pool_ids], int)
        arrays = {k: getattr(self, k)[take] for k in self.__dataclass_fields__ if k != "skipped"}
        return replace(self, **arrays)

    def with_added_liquidity(self, value_usd: float | ArrayLike | Mapping[str, float],
                             efficiency: float | ArrayLike | None = None) -> PoolStates:
        """The pools after depositing `value_usd` in each (USD; mapping pool id -> USD, array
        aligned with the pools, or one figure for every pool).

        Our deposit adds its value to the TVL and, on v3 pools, `usd_liquidity(value,
        efficiency)` full-range USD to the active liquidity; `efficiency` is our range
        efficiency (`concentrated.range_efficiency`), None meaning the pool's own assumed
        efficiency (a deposit shaped like the incumbents'). Human liquidity L scales with it.
        """
        if isinstance(value_usd, Mapping):
            unknown = sorted(set(value_usd) - set(self.pool_id.tolist()))
            if unknown:
                raise RoutingError(f"added liquidity names unknown pool(s) {unknown}; "
                                   f"pools: {self.pool_id.tolist()}")
            add = np.array([float(value_usd.get(p, 0.0)) for p in self.pool_id])
        else:
            add = np.broadcast_to(np.asarray(value_usd, float), (len(self),)).copy()
        if np.any(~np.isfinite(add)) or np.any(add < 0):
            i = int(np.flatnonzero(~np.isfinite(add) | (add < 0))[0])
            raise RoutingError(f"added liquidity for pool {self.pool_id[i]} is {add[i]!r}; "
                               "expected a finite USD amount >= 0")
        eff = (pool_efficiency(self.protocol.astype(str), self.fee_tier) if efficiency is None
               else np.broadcast_to(np.asarray(efficiency, float), (len(self),)))
        v3 = self.protocol == UNISWAP_V3
        active = np.where(v3, self.active_usd + usd_liquidity(add, eff), self.tvl_usd + add)
        grow = np.divide(active, self.active_usd, out=np.ones(len(self)),
                         where=self.active_usd > 0)
        return replace(self, tvl_usd=self.tvl_usd + add, active_usd=active,
                       liquidity=self.liquidity * grow)

    def describe(self) -> pd.DataFrame:
        """One row per pool: ids, tokens, fee, price, TVL, swap depth and its source."""
        return pd.DataFrame({
            POOL_ID: self.pool_id, PROTOCOL: self.protocol, CHAIN: self.chain,
            TOKEN0: self.token0, TOKEN1: self.token1, FEE_TIER: self.fee_tier,
            "price": self.price, TVL_USD: self.tvl_usd, "depth_usd": self.depth_usd(),
            "depth_source": self.depth_source, TIMESTAMP: self.timestamp})

