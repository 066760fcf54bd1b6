"""The feature build in stages: per-pool signals, cross-pool signals, labels and assembly.

A build is one :class:`BuildPlan` (settings in periods, the global pool order and time axis)
and three stages. :func:`pool_stage` and :func:`finish_stage` read only the pools they are
given, so they run on any partition of pools; :func:`cross_stage` reads a few per-pool series
of every pool (:func:`exchange_series`) and computes the market aggregates and the other
cross-pool signals once. The single-process build runs the stages on one partition holding
every pool; ``features.distributed`` runs them per partition on a Dask cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import names
from features._wide import Grid, rolling_mean, run_all, run_beside
from features.flow import fee_yield, flow_features, pair_share, tvl_flow_split
from features.network import network_features, token_groups
from features.schema import (
    CHAIN,
    CLOSE,
    FEES_USD,
    FREQUENCIES,
    HIGH,
    LOW,
    MISSING,
    OPEN,
    POOL_ID,
    STABLECOINS,
    TIMESTAMP,
    TOKEN0,
    TOKEN0_PRICE_USD,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
    TX_COUNT,
    VOLUME_USD,
)
from features.volatility import log_returns, realized_vol, volatility_features

__all__ = ["BuildPlan", "pool_grid", "wide_inputs", "pool_stage", "exchange_series",
           "exchange_direct", "cross_stage", "pair_shares", "finish_stage",
           "EXCHANGE"]

WIDE_COLUMNS = (OPEN, HIGH, LOW, CLOSE, VOLUME_USD, FEES_USD, TVL_USD, TOKEN0_PRICE_USD,
                TOKEN1_PRICE_USD)
# the per-pool series the cross-pool signals read
EXCHANGE = ("ret", "rv_short", "rv_long", "volume", "netflow", "tvl", "p0", "p1")


@dataclass(frozen=True)
class BuildPlan:
    """What every partition of one feature build shares.

    Windows, half-lives and horizons are in panel periods; ``pools`` is the global pool order
    (sorted ids) and ``meta`` its metadata rows in that order; ``times`` the global time axis.
    """

    freq: str
    times: pd.DatetimeIndex
    pools: list[str]
    meta: pd.DataFrame
    windows: dict[str, int]
    halflives: dict[str, int]
    har: dict[str, int]
    ppy: float
    horizon: pd.Timedelta
    h: int
    corr_w: int
    stress: dict[str, float]

    @property
    def step(self) -> pd.Timedelta:
        """One panel period."""
        return FREQUENCIES[self.freq]

    @property
    def short(self) -> str:
        """The network's short window: a day when built, else the shortest window."""
        day = names.duration_label("1d")
        return day if day in self.windows else next(iter(self.windows))

    @property
    def longest(self) -> str:
        """The longest trailing window."""
        return list(self.windows)[-1]

    def pair_index(self) -> np.ndarray:
        """Pair (token0/token1@chain) number of each pool, in pool order."""
        m = self.meta
        pairs = (m[TOKEN0] + "/" + m[TOKEN1] + "@" + m[CHAIN]).to_numpy()
        return np.unique(pairs, return_inverse=True)[1]


def pool_grid(frame: pd.DataFrame, plan: BuildPlan, pools: list[str]) -> Grid:
    """Grid of some pools' rows on the plan's global time axis (pools in the given order)."""
    ids = pa.array(frame[POOL_ID])  # each distinct id looked up once, not row by row
    if pa.types.is_dictionary(ids.type):  # a categorical column
        ids = ids.cast(ids.type.value_type)
    pi = pc.index_in(ids, value_set=pa.array(pools, type=ids.type)).fill_null(-1).to_numpy(
        zero_copy_only=False).astype(np.int64)
    if (pi < 0).any():
        bad = frame[POOL_ID].iloc[int(np.argmax(pi < 0))]
        raise ValueError(f"partition rows name pool {bad!r}, which is not among its pools "
                         f"{pools[:3]}...")
    ti = ((frame[TIMESTAMP] - plan.times[0]) // plan.step).to_numpy().astype(np.int64)
    if (ti < 0).any() or (ti >= len(plan.times)).any():
        raise ValueError(f"partition rows fall outside the panel's time axis "
                         f"{plan.times[0]} .. {plan.times[-1]}")
    present = np.zeros((len(plan.times), len(pools)), dtype=bool)
    present[ti, pi] = True
    return Grid(times=plan.times, pools=list(pools), ti=ti, pi=pi, present=present)


def wide_inputs(frame: pd.DataFrame, grid: Grid) -> dict[str, np.ndarray | None]:
    """The panel columns as (periods x pools) matrices; tx counts and gaps None when absent."""
    cols = [*WIDE_COLUMNS, *(c for c in (TX_COUNT, MISSING) if c in frame.columns)]

    def scatter(col: pd.Series) -> Callable[[], np.ndarray]:
        return lambda: grid.wide(col)

    grids = run_all([scatter(frame[c]) for c in cols])  # the columns on the build's threads
    w: dict[str, np.ndarray | None] = {TX_COUNT: None, MISSING: None}
    w.update(zip(cols, grids, strict=True))
    return {c: w[c] for c in (*WIDE_COLUMNS, TX_COUNT, MISSING)}


def _membership(plan: BuildPlan, idx: np.ndarray) -> np.ndarray:
    pair = plan.pair_index()
    return np.eye(int(pair.max()) + 1)[pair[idx]]


def pool_stage(
    plan: BuildPlan, w: dict[str, Any], idx: np.ndarray,
    step: Callable[[str], None] = lambda _: None,
    shares: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-pool features of the pools ``idx`` (positions in the plan's pool order).

    Returns the volatility and flow features and the gap features apart (the table lists the
    cross-pool features between them). Pair shares are over the pools given unless
    ``shares`` (:func:`pair_shares` of the whole market, these pools' columns) gives them.
    """
    membership = _membership(plan, idx)
    vol, flow = run_beside(  # independent: volatility on a build thread, flow (whose windows
        # go to the build's threads as they free up) here
        lambda: volatility_features(w[OPEN], w[HIGH], w[LOW], w[CLOSE], plan.windows, plan.ppy,
                                    plan.halflives, plan.har, plan.freq),
        lambda: flow_features(w[VOLUME_USD], w[FEES_USD], w[TVL_USD], w[TX_COUNT],
                              w[TOKEN0_PRICE_USD], w[TOKEN1_PRICE_USD], membership,
                              plan.windows, plan.ppy, plan.halflives, plan.freq,
                              None if shares is None else (shares["volume"], shares["tvl"])))
    feats = vol
    ret = feats[names.period(names.RET, plan.freq)]
    step("volatility")
    feats.update(flow)
    hz = names.duration_label(plan.horizon)
    if hz not in plan.windows:  # the seasonal-naive baselines read the horizon's trailing values
        feats[names.window(names.RV, hz)] = realized_vol(ret, plan.h, plan.ppy)
        feats[names.window(names.FEE_YIELD, hz)] = fee_yield(w[FEES_USD], w[TVL_USD], plan.h)
    step("flow")
    gaps: dict[str, np.ndarray] = {}
    if w[MISSING] is not None:
        for name, n in plan.windows.items():
            gaps[names.window("missing_frac", name)] = rolling_mean(w[MISSING], n, min_periods=1)
    return feats, gaps


def exchange_series(plan: BuildPlan, feats: dict[str, np.ndarray],
                    w: dict[str, Any]) -> dict[str, np.ndarray]:
    """The per-pool series the cross-pool signals read, taken from computed features."""
    return {"ret": feats[names.period(names.RET, plan.freq)],
            "rv_short": feats[names.window(names.RV, plan.short)],
            "rv_long": feats[names.window(names.RV, plan.longest)],
            "volume": w[VOLUME_USD], "netflow": feats[names.period("lp_netflow", plan.freq)],
            "tvl": w[TVL_USD], "p0": w[TOKEN0_PRICE_USD], "p1": w[TOKEN1_PRICE_USD]}


def exchange_direct(plan: BuildPlan, w: dict[str, Any]) -> dict[str, np.ndarray]:
    """The same series as :func:`exchange_series`, computed alone (a partition's first pass)."""
    ret = log_returns(w[CLOSE])
    return {"ret": ret, "rv_short": realized_vol(ret, plan.windows[plan.short], plan.ppy),
            "rv_long": realized_vol(ret, plan.windows[plan.longest], plan.ppy),
            "volume": w[VOLUME_USD],
            "netflow": tvl_flow_split(w[TVL_USD], w[TOKEN0_PRICE_USD], w[TOKEN1_PRICE_USD])[2],
            "tvl": w[TVL_USD], "p0": w[TOKEN0_PRICE_USD], "p1": w[TOKEN1_PRICE_USD]}


def cross_stage(plan: BuildPlan, ex: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Market aggregates and every cross-pool feature, from all pools' exchange series."""
    meta = plan.meta
    groups = token_groups(list(meta[TOKEN0]), list(meta[TOKEN1]))
    stable0 = meta[TOKEN0].isin(STABLECOINS).to_numpy()
    stable1 = meta[TOKEN1].isin(STABLECOINS).to_numpy()
    return network_features(
        ex["ret"], ex["rv_short"], ex["rv_long"], ex["volume"], ex["netflow"], ex["tvl"],
        ex["p0"], ex["p1"], groups, stable0, stable1, plan.corr_w, plan.windows[plan.short],
        (plan.short, names.duration_label(plan.corr_w * plan.step)), plan.freq)


def pair_shares(plan: BuildPlan, ex: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each pool's share of its pair's volume and TVL, over the whole market."""
    m = _membership(plan, np.arange(len(plan.pools)))
    return {"volume": pair_share(ex["volume"], m), "tvl": pair_share(ex["tvl"], m)}


def finish_stage(
    frame: pd.DataFrame, grid: Grid, feats: dict[str, np.ndarray],
    labels: dict[str, np.ndarray], step: Callable[[str], None] = lambda _: None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long feature and label tables of the grid's pools from their wide matrices.

    ``feats`` is emptied as its columns are converted, to hold one copy at a time.
    """
    # the columns' own arrays: to_numpy() would turn tz-aware stamps into Python objects
    keys = {POOL_ID: frame[POOL_ID].array, TIMESTAMP: frame[TIMESTAMP].array}
    missing = (frame[MISSING].to_numpy(bool) if MISSING in frame.columns
               else np.zeros(len(frame), bool))
    # one array per column, each allocated as the wide matrix it comes from is freed, so the
    # allocator reuses that memory (one large block would be fresh pages on top of it)
    def column(k: str) -> Callable[[], np.ndarray]:
        # a reindexed gap never carries a value
        return lambda: grid.long_into(feats.pop(k), np.empty(len(frame), np.float32), missing)

    order = list(feats)
    fcols = dict(zip(order, run_all([column(k) for k in order]), strict=True))
    features = pd.DataFrame({**keys, MISSING: missing, **fcols}, copy=False)
    def label(v: np.ndarray) -> Callable[[], np.ndarray]:
        return lambda: grid.long_into(v, np.empty(len(frame)))

    lcols = dict(zip(labels, run_all([label(v) for v in labels.values()]), strict=True))
    out = pd.DataFrame({**keys, **lcols}, copy=False)
    step("assemble")
    return features, out
