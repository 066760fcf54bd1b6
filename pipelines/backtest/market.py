"""The panel and its labels as (periods x pools) arrays, with realised per-period LP economics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features._wide import make_grid
from features.labels import LABEL_COLUMNS
from features.schema import (
    CLOSE,
    FEES_USD,
    HIGH,
    LIQUIDITY,
    LOW,
    MISSING,
    POOL_ID,
    TIMESTAMP,
    TOKEN0_PRICE_USD,
    TOKEN1_PRICE_USD,
    TVL_USD,
    Panel,
    duration_periods,
    freq_step,
)
from models.economics.concentrated import human_liquidity
from models.economics.costs import swap_depth_usd
from models.economics.fees import FEE_SHARE_FROM_LIQUIDITY, FEE_SHARE_FROM_TVL
from models.economics.invariants import WEIGHTED
from models.economics.lvr import lvr_fraction
from models.economics.paths import DEFAULT_WIDTH, position_paths
from models.routing import PoolStates

__all__ = ["MarketData", "LABELS"]

LABELS = LABEL_COLUMNS  # the forward labels pivoted per (period, pool)


def _ffill(a: np.ndarray) -> np.ndarray:
    """Forward-fill NaN down the time axis (leading NaN stay)."""
    return pd.DataFrame(a).ffill().to_numpy()


def _growth(p: np.ndarray) -> np.ndarray:
    """Per-period growth factors of a forward-filled price matrix (1 where unknown)."""
    return np.nan_to_num(p / np.vstack([p[:1], p[:-1]]), nan=1.0)


def _prev(a: np.ndarray) -> np.ndarray:
    """The previous period's row (the first row repeats itself)."""
    return np.vstack([a[:1], a[:-1]])


def _weight0(meta: pd.DataFrame) -> np.ndarray:
    """Token0 weight per pool: the metadata's `weight0` on weighted pools, 0.5 elsewhere."""
    w = (pd.to_numeric(meta["weight0"], errors="coerce").to_numpy(float)
         if "weight0" in meta.columns else np.full(len(meta), 0.5))
    weighted = meta["protocol"].astype(str).to_numpy() == WEIGHTED
    return np.where(weighted, np.nan_to_num(w, nan=0.5), 0.5)


@dataclass
class MarketData:
    """Wide arrays of one panel: pool state, realised LP growth and forward labels.

    `active_usd` is the pool's active liquidity in full-range USD (the `fees.usd_liquidity`
    convention): from the panel's `liquidity` where present, else TVL x the assumed pool
    efficiency; `fee_share_source` says which, per pool.
    """

    times: pd.DatetimeIndex
    pools: list[str]
    freq: str
    meta: pd.DataFrame
    tvl: np.ndarray
    fees: np.ndarray
    missing: np.ndarray
    available: np.ndarray
    tvl_prev: np.ndarray
    active_prev: np.ndarray
    logret: np.ndarray
    lp_ratio: np.ndarray
    hodl_ratio: np.ndarray
    liq_per_value: np.ndarray
    in_range: np.ndarray
    lvr_rate: np.ndarray
    fee_tier: np.ndarray
    labels: dict[str, np.ndarray]
    horizon_bars: int
    fee_share_source: dict[str, str]
    close_prev: np.ndarray | None = None  # previous bar's close (token1 per token0), ffilled
    usd0_prev: np.ndarray | None = None  # previous bar's token0 / token1 USD prices, ffilled
    usd1_prev: np.ndarray | None = None
    # caches: not init fields, so a `dataclasses.replace` copy starts with empty ones
    _states: dict[int, PoolStates] = field(default_factory=dict, init=False, repr=False,
                                           compare=False)
    _depth: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False,
                                          compare=False)
    _names: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False,
                                          compare=False)

    @property
    def step(self) -> pd.Timedelta:
        """One panel period."""
        return freq_step(self.freq)

    @property
    def n_bars(self) -> int:
        """Number of periods."""
        return len(self.times)

    @property
    def shape(self) -> tuple[int, int]:
        """(periods, pools)."""
        return (len(self.times), len(self.pools))

    @property
    def periods_per_year(self) -> float:
        """Periods per year at this frequency."""
        return pd.Timedelta(days=365) / self.step

    def index_of(self, t: pd.Timestamp) -> int:
        """Bar index of a timestamp on the grid."""
        loc = self.times.get_loc(t)
        if not isinstance(loc, int):
            raise KeyError(f"{t} is not a single period of the panel")
        return loc

    def label(self, name: str) -> np.ndarray:
        """Forward label as (periods x pools) array."""
        return self.labels[name]

    @classmethod
    def from_panel(cls, panel: Panel, fs: Any, width: float | np.ndarray = DEFAULT_WIDTH,
                   recenter_after: int | None = 1) -> MarketData:
        """Pivot a panel and its labels; compute per-bar LP growth and liquidity shares."""
        f = panel.frame
        grid = make_grid(f, panel.freq)
        pools, times = grid.pools, grid.times
        meta = panel.meta.assign(pool_id=panel.meta[POOL_ID].astype(str)).set_index(
            POOL_ID).loc[pools]
        w = {c: grid.wide(f[c]) for c in (CLOSE, HIGH, LOW, FEES_USD, TVL_USD,
                                          TOKEN0_PRICE_USD, TOKEN1_PRICE_USD)}
        miss = grid.wide(f[MISSING].astype(float)) if MISSING in f else np.zeros(grid.present.shape)
        missing = (np.nan_to_num(miss, nan=1.0) > 0) | ~np.isfinite(w[TVL_USD])
        p0, p1 = _ffill(w[TOKEN0_PRICE_USD]), _ffill(w[TOKEN1_PRICE_USD])
        g0, g1 = _growth(p0), _growth(p1)
        close = w[CLOSE]
        paths = position_paths(g0, g1, meta, ohlc_rel=(w[HIGH] / close, w[LOW] / close),
                               width=width, recenter_after=recenter_after)
        tvl_f = _ffill(w[TVL_USD])
        tvl_prev = np.nan_to_num(np.vstack([tvl_f[:1], tvl_f[:-1]]), nan=0.0)
        active = tvl_f * paths.pool_eff
        source = dict.fromkeys(pools, FEE_SHARE_FROM_TVL)
        if LIQUIDITY in f and {"decimals0", "decimals1"} <= set(meta.columns):
            liq = _ffill(grid.wide(f[LIQUIDITY]))
            d0, d1 = meta["decimals0"].to_numpy(float), meta["decimals1"].to_numpy(float)
            # full-range USD of active liquidity L at price P (token1 per token0): 2 L sqrt(P)
            # token1, valued at token1's USD price (decimals broadcast per pool)
            human = human_liquidity(liq, d0, d1)  # type: ignore[arg-type]
            usd = 2.0 * human * np.sqrt(_ffill(close)) * p1
            has = np.isfinite(usd) & (usd > 0)
            active = np.where(has, usd, active)
            for j in np.flatnonzero(has.any(axis=0)):
                source[pools[j]] = FEE_SHARE_FROM_LIQUIDITY
        active_prev = np.nan_to_num(np.vstack([active[:1], active[:-1]]), nan=0.0)
        logret = np.log(g0 / g1)
        lab_grid = make_grid(fs.labels, panel.freq)
        if lab_grid.pools != pools or not lab_grid.times.equals(times):
            raise ValueError("feature-set labels do not cover the panel's pools and periods; "
                             "rebuild features from this panel")
        labels = {c: lab_grid.wide(fs.labels[c]) for c in LABELS if c in fs.labels}
        return cls(
            times=times, pools=pools, freq=panel.freq, meta=meta, tvl=w[TVL_USD],
            fees=np.where(missing, 0.0, np.nan_to_num(w[FEES_USD])), missing=missing,
            available=~missing & (np.nan_to_num(w[TVL_USD]) > 0), tvl_prev=tvl_prev,
            active_prev=active_prev, logret=logret, lp_ratio=paths.lp,
            hodl_ratio=paths.hodl, liq_per_value=paths.liq_per_value,
            in_range=paths.in_range,
            lvr_rate=lvr_fraction(np.abs(logret), 1.0, paths.liq_per_value, paths.in_range),
            fee_tier=meta["fee_tier"].to_numpy(float), labels=labels,
            horizon_bars=max(1, duration_periods(fs.horizon, panel.freq)),
            fee_share_source=source, close_prev=_prev(_ffill(close)), usd0_prev=_prev(p0),
            usd1_prev=_prev(p1))

    def trailing_apr(self, window: str) -> np.ndarray:
        """Trailing fee APR per bar and pool: window fees / mean window TVL, annualised."""
        n = max(2, duration_periods(window, self.freq))
        fees = pd.DataFrame(np.where(self.missing, np.nan, self.fees))
        tvl = pd.DataFrame(np.where(self.missing, np.nan, self.tvl))
        s = fees.rolling(n, min_periods=max(1, n // 2)).sum()
        m = tvl.rolling(n, min_periods=max(1, n // 2)).mean()
        return (s / m.where(m > 0)).to_numpy() * (self.periods_per_year / n)

    def names(self, column: str) -> np.ndarray:
        """A metadata column (protocol, chain, token0, ...) as a str array, built once."""
        hit = self._names.get(column)
        if hit is None:
            hit = self._names[column] = np.asarray(self.meta[column].to_numpy()).astype(str)
        return hit

    def swap_depth(self, e: int) -> np.ndarray:
        """Swap depth per pool at the start of bar e, USD (`costs.swap_depth_usd` on the
        previous bar's TVL and active liquidity); built once per bar, shared by the books."""
        hit = self._depth.get(e)
        if hit is None:
            hit = self._depth[e] = swap_depth_usd(self.tvl_prev[e], self.names("protocol"),
                                                  active_liquidity_usd=self.active_prev[e])
        return hit

    def _static_states(self) -> dict[str, np.ndarray]:
        """The per-pool fields of `pool_states` that do not change from bar to bar."""
        if "state_pool_id" not in self._names:
            m = self.meta
            for c in ("protocol", "chain", "token0", "token1"):
                self._names[f"state_{c}"] = m[c].astype(str).to_numpy(object)
            self._names["state_weight0"] = _weight0(m)
            self._names["state_pool_id"] = np.asarray(self.pools, object)
        return {k.removeprefix("state_"): v for k, v in self._names.items()
                if k.startswith("state_")}

    def pool_states(self, e: int) -> PoolStates:
        """Tradable state of every pool at the start of bar e (the previous bar's close, TVL
        and active liquidity), for routing; built once per bar and shared by the strategies.

        Pools without a positive TVL, active liquidity, price and USD prices are left out.
        """
        hit = self._states.get(e)
        if hit is not None:
            return hit
        if self.close_prev is None or self.usd0_prev is None or self.usd1_prev is None:
            raise ValueError("market has no per-bar prices; build it with MarketData.from_panel")
        price, u0, u1 = self.close_prev[e], self.usd0_prev[e], self.usd1_prev[e]
        tvl, active = self.tvl_prev[e], self.active_prev[e]
        ok = np.ones(len(self.pools), bool)
        for v in (price, u0, u1, tvl, active):
            ok &= np.isfinite(v) & (v > 0)
        st = self._static_states()
        n = int(ok.sum())
        states = PoolStates(
            pool_id=st["pool_id"][ok], protocol=st["protocol"][ok], chain=st["chain"][ok],
            token0=st["token0"][ok], token1=st["token1"][ok],
            fee_tier=self.fee_tier[ok], price=price[ok], tvl_usd=tvl[ok], token0_usd=u0[ok],
            token1_usd=u1[ok], active_usd=active[ok], liquidity=np.full(n, np.nan),
            weight0=st["weight0"][ok],
            depth_source=np.full(n, "backtest", object),
            timestamp=np.full(n, self.times[e].to_datetime64()),
            skipped={p: "no positive TVL, price or USD prices at this bar"
                     for p, good in zip(self.pools, ok, strict=True) if not good})
        self._states[e] = states
        return states

    def timestamps(self) -> pd.Series:
        """The grid's timestamps as a Series (for reports)."""
        return pd.Series(self.times, name=TIMESTAMP)
