"""Strategies compared in the backtest.

Every strategy sees one `DecisionContext`, built by the engine from rows at or before the
decision time only; the hindsight oracle and the perfect-foresight allocator alone are handed
what happened next.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

__all__ = ["DecisionContext", "Strategy", "EqualWeight", "TvlWeighted", "TrailingApr", "Hold",
           "AllocatorStrategy", "Capped", "HindsightOracle", "STRATEGY_NAMES", "BASELINES",
           "default_strategies"]

STRATEGY_NAMES = ["allocator", "allocator_perfect", "equal_weight", "tvl_weighted", "trailing_apr",
                  "hold", "equal_weight_capped", "tvl_weighted_capped", "oracle",
                  "oracle_lp_alpha"]
BASELINES = ["equal_weight", "tvl_weighted", "trailing_apr", "hold"]


@dataclass
class DecisionContext:
    """What a strategy may look at when deciding at time t (execution happens at t + 1 period).

    Attributes
    ----------
    t : decision time (start of the last fully observed period).
    pools : pool ids, the order of every array below.
    available : pools with a usable row at t (not missing, TVL > 0).
    tvl_usd : pool TVL at t, USD.
    trailing_apr : trailing fee APR per pool (fees over the window / mean TVL, annualised).
    current : the strategy's own drifted weights at t (fraction of its equity).
    meta : pool metadata indexed like `pools`.
    first : True at the first decision of the run.
    forecasts : provider output for the allocator (indexed by pool_id), when available.
    baseline_forecasts : the causal baseline's forecasts (the allocator run on baselines).
    perfect : what actually happened over the holding period, in the allocator's input
        format (perfect-foresight allocator only).
    plan : the hindsight oracle's target weights for this decision (oracle only).
    equity : the strategy's current equity (USD): decisions are sized on it.
    """

    t: pd.Timestamp
    pools: list[str]
    available: np.ndarray
    tvl_usd: np.ndarray
    trailing_apr: np.ndarray
    current: np.ndarray
    meta: pd.DataFrame
    first: bool
    forecasts: pd.DataFrame | None = None
    baseline_forecasts: pd.DataFrame | None = None
    perfect: pd.DataFrame | None = None
    plan: np.ndarray | None = None
    equity: float = 0.0


class Strategy(Protocol):
    """A rule that maps a decision context to target weights (sum <= 1, rest is cash)."""

    name: str

    def decide(self, ctx: DecisionContext) -> np.ndarray | None:
        """Target weights per pool, or None to keep the current positions."""
        ...


def _normalise(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Non-negative weights on `mask`, scaled to sum to 1 (zeros when nothing qualifies)."""
    w = np.where(mask & np.isfinite(x), np.maximum(x, 0.0), 0.0)
    s = w.sum()
    return w / s if s > 0 else np.zeros_like(w)


@dataclass
class EqualWeight:
    """Equal weight across available pools, rebalanced at every decision."""

    name: str = "equal_weight"

    def decide(self, ctx: DecisionContext) -> np.ndarray | None:
        """1 / n on each available pool."""
        return _normalise(np.ones(len(ctx.pools)), ctx.available)


@dataclass
class TvlWeighted:
    """Weights proportional to pool TVL at the decision time."""

    name: str = "tvl_weighted"

    def decide(self, ctx: DecisionContext) -> np.ndarray | None:
        """TVL share of each available pool."""
        return _normalise(ctx.tvl_usd, ctx.available)


@dataclass
class TrailingApr:
    """Chase trailing fee APR: equal weight on the top k pools, or proportional to APR."""

    top_k: int = 5
    mode: str = "top_k"
    name: str = "trailing_apr"

    def decide(self, ctx: DecisionContext) -> np.ndarray | None:
        """Top-k equal weights (mode "top_k") or APR-proportional weights ("proportional")."""
        apr = np.where(ctx.available & np.isfinite(ctx.trailing_apr), ctx.trailing_apr, -np.inf)
        if not np.isfinite(apr).any():
            return EqualWeight().decide(ctx)
        if self.mode == "proportional":
            return _normalise(np.where(np.isfinite(apr), apr, 0.0), ctx.available)
        k = min(self.top_k, int(np.isfinite(apr).sum()))
        top = np.argsort(-apr, kind="stable")[:k]
        mask = np.zeros(len(apr), bool)
        mask[top] = True
        return _normalise(np.ones(len(apr)), mask)


@dataclass
class Hold:
    """Buy and hold: equal weight at the first decision, never rebalanced."""

    name: str = "hold"

    def decide(self, ctx: DecisionContext) -> np.ndarray | None:
        """Equal weight once, then None (keep positions)."""
        return EqualWeight().decide(ctx) if ctx.first else None


@dataclass
class Capped:
    """Another strategy's weights under the allocator's per-pool and per-token caps."""

    inner: Any
    max_weight: float
    max_token_weight: float
    name: str = ""

    def __post_init__(self) -> None:
        """Name after the wrapped strategy."""
        self.name = self.name or f"{self.inner.name}_capped"

    def decide(self, ctx: DecisionContext) -> np.ndarray | None:
        """The inner strategy's weights, clipped per pool and scaled down per token."""
        w = self.inner.decide(ctx)
        if w is None:
            return None
        from models.allocation.inputs import incidence

        w = np.minimum(np.asarray(w, float), self.max_weight)
        _, _, a = incidence(ctx.meta)
        for _ in range(len(a) + 1):
            load = a @ w if a.size else np.zeros(0)
            over = load - self.max_token_weight
            if not a.size or (over <= 1e-12).all():
                break
            i = int(np.argmax(over))
            w = np.where(a[i] > 0, w * self.max_token_weight / load[i], w)
        return w


@dataclass
class HindsightOracle:
    """Executes a hindsight plan (one convex program over all decisions, realised data).

    "oracle" bounds net return (token moves included), "oracle_lp_alpha" bounds LP alpha.
    """

    name: str = "oracle"

    def decide(self, ctx: DecisionContext) -> np.ndarray | None:
        """The plan's weights for this decision."""
        return None if ctx.plan is None else np.clip(ctx.plan, 0.0, None)


@dataclass
class AllocatorStrategy:
    """The convex allocator, sized on current equity, fed one source of forecasts.

    source : "forecasts" (the model), "baseline_forecasts" (the causal baselines) or
        "perfect" (what actually happened: the value of perfect forecasts).
    """

    config: Any
    source: str = "forecasts"
    name: str = "allocator"
    allocate_fn: Any = None
    fallbacks: list[tuple[pd.Timestamp, list[str]]] = field(default_factory=list)
    _meta: dict[tuple[str, ...], tuple[pd.DataFrame, pd.DataFrame]] = field(
        default_factory=dict, repr=False, compare=False)
    _index: tuple[list[str], pd.Index] | None = field(default=None, repr=False, compare=False)
    _prepared: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False,
                                                   compare=False)

    def _pool_index(self, pools: list[str]) -> pd.Index:
        """`pools` as an Index, built once per pool list."""
        if self._index is None or self._index[0] is not pools:
            self._index = (pools, pd.Index(pools))
        return self._index[1]

    def _meta_rows(self, meta: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
        """The metadata rows of `index` with pool_id as a column, built once per pool set."""
        key = tuple(index.tolist())
        hit = self._meta.get(key)
        if hit is None or hit[0] is not meta:
            if len(self._meta) > 64:
                self._meta.clear()
            hit = self._meta[key] = (meta, meta.loc[index].reset_index())
        return hit[1]  # the same frame each time: the allocator reuses its metadata work

    def _allocate(self, fc: pd.DataFrame, current: pd.Series, meta: pd.DataFrame,
                  cfg: Any) -> Any:
        """The allocation; the default allocator reuses the pool set's metadata work."""
        from models.allocation import allocate
        from models.allocation.allocate import allocate_prepared
        from models.allocation.inputs import check_forecasts, share_metadata, with_current

        if self.allocate_fn is not allocate:
            return self.allocate_fn(fc, current, meta, cfg)
        key = tuple(fc.index.tolist())
        pp = share_metadata(check_forecasts(fc, meta), self._prepared.get(key))
        if len(self._prepared) > 64:
            self._prepared.clear()
        self._prepared[key] = pp
        return allocate_prepared(with_current(pp, current), cfg)

    def decide(self, ctx: DecisionContext) -> np.ndarray | None:
        """Weights from models.allocation.allocate; None when no forecasts exist yet."""
        if self.allocate_fn is None:
            from models.allocation import allocate

            self.allocate_fn = allocate
        fc = getattr(ctx, self.source)
        if fc is None or fc.empty:
            return None
        pools = self._pool_index(ctx.pools)
        fc = fc.loc[fc.index.intersection(pools[ctx.available])]
        if fc.empty:
            return np.zeros(len(ctx.pools))
        pos = pools.get_indexer(fc.index)
        current = pd.Series(np.asarray(ctx.current)[pos], index=pools[pos])
        meta = self._meta_rows(ctx.meta, fc.index)
        cfg = dataclasses.replace(self.config, capital_usd=max(float(ctx.equity), 1.0))
        alloc = self._allocate(fc, current, meta, cfg)
        chain = list(getattr(alloc, "fallback_chain", []) or [])
        if chain:
            self.fallbacks.append((ctx.t, [str(c) for c in chain]))
        w = pd.Series(alloc.weights, dtype=float)
        pos = pools.get_indexer(w.index)
        out = np.zeros(len(ctx.pools))
        hit = pos >= 0
        out[pos[hit]] = np.nan_to_num(w.to_numpy(float)[hit], nan=0.0, posinf=np.inf,
                                      neginf=-np.inf)
        return np.clip(out, 0.0, None)


def default_strategies(allocator_config: Any, top_k: int = 5, apr_mode: str = "top_k",
                       with_baseline_forecasts: bool = False) -> list[Strategy]:
    """The strategies of a standard run, in report order."""
    caps = (allocator_config.max_weight, allocator_config.max_token_weight)
    out: list[Strategy] = [AllocatorStrategy(allocator_config, name="allocator")]
    if with_baseline_forecasts:
        out.append(AllocatorStrategy(allocator_config, source="baseline_forecasts",
                                     name="allocator_baseline_forecasts"))
    out += [
        AllocatorStrategy(allocator_config, source="perfect", name="allocator_perfect"),
        EqualWeight(), TvlWeighted(), TrailingApr(top_k=top_k, mode=apr_mode), Hold(),
        Capped(EqualWeight(), *caps), Capped(TvlWeighted(), *caps), HindsightOracle(),
        HindsightOracle(name="oracle_lp_alpha"),
    ]
    return out
