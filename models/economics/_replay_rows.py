"""One pool's panel rows as the arrays a position replay reads, gaps filled as a DEX behaves.

A row flagged ``missing`` (or with no close) had no recorded swap: the pool price and
liquidity stay where they were and no fee is earned. Leading rows without a price are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.schema import STABLECOINS, check_freq
from features.sources.demeter import FEES_TOKEN0, FEES_TOKEN1
from models.economics import concentrated as cm
from models.economics.fees import FEE_SHARE_FROM_LIQUIDITY, FEE_SHARE_FROM_TVL
from models.economics.paths import pool_efficiency

__all__ = ["PoolRows", "ReplayError", "pool_rows", "snap_range", "TICK_SPACING"]

# Uniswap v3 tick spacing per fee tier
TICK_SPACING = {0.0001: 1, 0.0005: 10, 0.003: 60, 0.01: 200}
NEEDED = ["timestamp", "close", "fees_usd", "tvl_usd", "token0_price_usd", "token1_price_usd"]


@dataclass
class PoolRows:
    """Arrays of one pool's rows plus what the replay needs from its metadata."""

    pool_id: str
    quote: str
    base: str
    quote_is_token0: bool
    timestamps: pd.DatetimeIndex
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    fees_usd: np.ndarray
    fees_tokens: tuple[np.ndarray, np.ndarray] | None  # pool fees per token (human units)
    tvl_usd: np.ndarray
    t1_usd: np.ndarray
    quote_usd: np.ndarray
    pool_liq: np.ndarray | None  # active liquidity, human units; None: TVL approximation
    pool_eff: float
    fee_tier: float
    protocol: str
    chain: str | None
    decimals: tuple[int, int] | None
    tick_spacing: int
    freq: str
    step: pd.Timedelta
    minute: bool
    fee_share_source: str
    notes: list[str] = field(default_factory=list)


class ReplayError(ValueError):
    """Replay inputs that cannot describe a position (names the pool and what was expected)."""


def _err(pool: str, msg: str) -> ReplayError:
    return ReplayError(f"pool {pool}: {msg}")


def _meta_value(meta: Mapping[str, Any] | pd.Series, key: str, default: Any = None) -> Any:
    v = meta.get(key, default) if hasattr(meta, "get") else default
    return default if v is None or (not isinstance(v, str) and pd.isna(v)) else v


def _quote_side(token0: str, token1: str, quote: str | None, pool: str) -> bool:
    """True when token0 is the quote token (default: token0 when it is a stablecoin)."""
    if quote is None:
        return token0 in STABLECOINS
    q = str(quote).strip()
    if q.lower() == "token0" or q.upper() == token0.upper():
        return True
    if q.lower() == "token1" or q.upper() == token1.upper():
        return False
    raise _err(pool, f"quote {quote!r} is neither token0 ({token0}) nor token1 ({token1})")


def _freq(ts: pd.DatetimeIndex, freq: str | None, pool: str) -> tuple[str, pd.Timedelta]:
    if freq is not None:
        f = check_freq(freq)
        return f, pd.Timedelta(f)
    if len(ts) < 2:
        raise _err(pool, "one row: give freq to replay it")
    step = pd.Timedelta(np.median(np.diff(ts.asi8)), unit="ns")
    named = {pd.Timedelta(minutes=1): "1min", pd.Timedelta(hours=1): "1h",
             pd.Timedelta(days=1): "1d"}
    return named.get(step, str(step)), step


def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float, copy=True)


def _fee_tokens(df: pd.DataFrame, live: np.ndarray, fees_usd: np.ndarray, t0_usd: np.ndarray,
                t1_usd: np.ndarray, notes: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Pool fees per token when the rows carry them and they add up to fees_usd (within 1 %)."""
    if FEES_TOKEN0 not in df.columns or FEES_TOKEN1 not in df.columns:
        return None
    f0 = np.where(live, np.nan_to_num(_col(df, FEES_TOKEN0)), 0.0)
    f1 = np.where(live, np.nan_to_num(_col(df, FEES_TOKEN1)), 0.0)
    gap = np.abs(f0 * t0_usd + f1 * t1_usd - fees_usd)
    if np.nansum(gap) > 0.01 * np.nansum(fees_usd) + 1e-9:
        notes.append(f"{FEES_TOKEN0}/{FEES_TOKEN1} do not add up to fees_usd: unused")
        return None
    return f0, f1


def pool_rows(frame: pd.DataFrame, meta: Mapping[str, Any] | pd.Series, *, quote: str | None,
              freq: str | None, tick_spacing: int | None) -> PoolRows:
    """Validate one pool's rows and metadata and return the replay's arrays."""
    pool = str(_meta_value(meta, "pool_id", "?"))
    absent = [c for c in NEEDED if c not in frame.columns]
    if absent:
        raise _err(pool, f"panel rows lack column(s) {absent}")
    if "pool_id" in frame.columns and frame["pool_id"].nunique() > 1:
        raise _err(pool, f"rows hold {frame['pool_id'].nunique()} pools; pass one pool's rows")
    protocol = str(_meta_value(meta, "protocol", "uniswap_v3"))
    if protocol != "uniswap_v3":
        raise _err(pool, f"protocol {protocol!r}: the replay holds a uniswap_v3 range position")
    token0, token1 = str(_meta_value(meta, "token0", "token0")), str(_meta_value(meta, "token1",
                                                                                  "token1"))
    fee_tier = float(_meta_value(meta, "fee_tier", np.nan))
    if not 0 <= fee_tier < 1:
        raise _err(pool, f"fee_tier {fee_tier!r} must be a fraction in [0, 1)")
    df = frame if frame["timestamp"].is_monotonic_increasing else frame.sort_values(
        "timestamp", kind="stable")
    ts = pd.DatetimeIndex(df["timestamp"]).as_unit("ns")
    if ts.has_duplicates:
        raise _err(pool, f"duplicate timestamp {ts[ts.duplicated()][0]}")
    fq, step = _freq(ts, freq, pool)
    if len(ts) > 1 and (np.diff(ts.asi8) != step.value).any():  # gaps become explicit rows
        grid = pd.date_range(ts[0], ts[-1], freq=step, name="timestamp")
        if len(grid.intersection(ts)) != len(ts):
            raise _err(pool, f"timestamps are not on a regular {fq} grid")
        df = df.set_index(ts.rename("timestamp")).drop(columns="timestamp").reindex(
            grid).reset_index()
        if "missing" in df.columns:
            df["missing"] = df["missing"].astype("boolean").fillna(True).astype(bool)
        ts = grid
    close = _col(df, "close")
    if "missing" in df.columns:
        close[df["missing"].to_numpy(bool)] = np.nan
    first = np.flatnonzero(np.isfinite(close) & (close > 0))
    if first.size == 0:
        raise _err(pool, "no row with a price")
    notes: list[str] = []
    if first[0] > 0:
        notes.append(f"dropped {first[0]} leading row(s) without a price")
        df, close = df.iloc[first[0]:], close[first[0]:]
    live = np.isfinite(close) & (close > 0)
    if not live.all():
        notes.append(f"{int((~live).sum())} row(s) without a swap record: price carried, no fee")

    carry = np.maximum.accumulate(np.where(live, np.arange(len(live)), 0))

    def filled(name: str) -> np.ndarray:  # value of the last live row
        v = _col(df, name)
        ok = live & np.isfinite(v)
        if ok.all():
            return v
        last = carry if (ok == live).all() else np.maximum.accumulate(
            np.where(ok, np.arange(len(ok)), 0))
        return v[last]

    close = filled("close")
    ohlc = []
    for name in ("open", "high", "low"):
        v = _col(df, name) if name in df.columns else np.full(len(df), np.nan)
        ohlc.append(np.where(live & np.isfinite(v) & (v > 0), v, close))
    fees = np.where(live, np.nan_to_num(_col(df, "fees_usd")), 0.0)
    ts = ts[len(ts) - len(df):]
    q0 = _quote_side(token0, token1, quote, pool)
    if quote is None and token0 not in STABLECOINS and token1 not in STABLECOINS:
        notes.append(f"no stablecoin leg: values are in {token1}")
    t0_usd, t1_usd = filled("token0_price_usd"), filled("token1_price_usd")
    tokens = _fee_tokens(df, live, fees, t0_usd, t1_usd, notes)
    d0, d1 = _meta_value(meta, "decimals0"), _meta_value(meta, "decimals1")
    decimals = (int(d0), int(d1)) if d0 is not None and d1 is not None else None
    pool_liq, source = None, FEE_SHARE_FROM_TVL
    if "liquidity" in df.columns and np.isfinite(_col(df, "liquidity")).any():
        if decimals is None:
            notes.append("liquidity column unused: token decimals missing from the metadata")
        else:
            pool_liq = cm.human_liquidity(filled("liquidity"), *decimals)
            source = FEE_SHARE_FROM_LIQUIDITY
    spacing = tick_spacing
    if spacing is None:
        spacing = next((v for k, v in TICK_SPACING.items() if abs(k - fee_tier) < 1e-9), 0)
    if spacing and decimals is None:
        notes.append("range not snapped to ticks: token decimals missing from the metadata")
        spacing = 0
    chain = _meta_value(meta, "chain")
    return PoolRows(
        pool_id=pool, quote=token0 if q0 else token1, base=token1 if q0 else token0,
        quote_is_token0=bool(q0), timestamps=ts, open=ohlc[0], high=ohlc[1], low=ohlc[2],
        close=close, fees_usd=fees, fees_tokens=tokens,
        tvl_usd=np.nan_to_num(filled("tvl_usd")), t1_usd=t1_usd,
        quote_usd=t0_usd if q0 else t1_usd, pool_liq=pool_liq,
        pool_eff=float(pool_efficiency(np.array([protocol]), np.array([fee_tier]))[0]),
        fee_tier=fee_tier, protocol=protocol, chain=str(chain) if chain else None,
        decimals=decimals, tick_spacing=int(spacing), freq=fq, step=step,
        minute=step <= pd.Timedelta(minutes=1), fee_share_source=source, notes=notes)


def snap_range(lower: float, upper: float, r: PoolRows) -> tuple[float, float]:
    """Range bounds (token1 per token0) moved to the pool's usable ticks, as demeter does.

    The tick of a bound is truncated toward zero, then rounded to the nearest multiple of the
    tick spacing; a range that collapses keeps one spacing.
    """
    if not r.tick_spacing or r.decimals is None:
        return float(lower), float(upper)
    sp = r.tick_spacing
    ticks = np.round(np.trunc(cm.price_to_tick(np.array([lower, upper]), *r.decimals)) / sp) * sp
    lo_t, hi_t = float(ticks[0]), float(ticks[1])
    if hi_t <= lo_t:
        hi_t = lo_t + sp
    return float(cm.tick_to_price(lo_t, *r.decimals)), float(cm.tick_to_price(hi_t, *r.decimals))
