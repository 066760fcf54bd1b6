"""Strategies compared in the backtest, and the forecast providers that feed the allocator.

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

from features.schema import freq_step

__all__ = ["DecisionContext", "Strategy", "EqualWeight", "TvlWeighted", "TrailingApr", "Hold",
           "ForecastProvider", "BaselineProvider", "BundleProvider", "purged_rows",
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

    def decide(self, ctx: DecisionContext) -> np.ndarray | None:
        """Weights from models.allocation.allocate; None when no forecasts exist yet."""
        if self.allocate_fn is None:
            from models.allocation import allocate

            self.allocate_fn = allocate
        fc = getattr(ctx, self.source)
        if fc is None or fc.empty:
            return None
        avail = pd.Index(ctx.pools)[ctx.available]
        fc = fc.loc[fc.index.intersection(avail)]
        if fc.empty:
            return np.zeros(len(ctx.pools))
        current = pd.Series(ctx.current, index=ctx.pools).loc[fc.index]
        meta = ctx.meta.loc[fc.index].reset_index()
        cfg = dataclasses.replace(self.config, capital_usd=max(float(ctx.equity), 1.0))
        alloc = self.allocate_fn(fc, current, meta, cfg)
        chain = list(getattr(alloc, "fallback_chain", []) or [])
        if chain:
            self.fallbacks.append((ctx.t, [str(c) for c in chain]))
        w = pd.Series(alloc.weights, dtype=float).reindex(ctx.pools).fillna(0.0)
        return np.clip(w.to_numpy(float), 0.0, None)


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


# --------------------------------------------------------------------------- forecast providers


class ForecastProvider(Protocol):
    """Anything that fits on labelled rows before a cutoff and predicts allocator inputs at t."""

    def fit(self, fs: Any, upto: pd.Timestamp) -> ForecastProvider:
        """Fit on rows whose label horizon ended at or before `upto` (purged)."""
        ...

    def predict_pools(self, fs: Any, t: pd.Timestamp) -> pd.DataFrame | None:
        """Allocator inputs per pool at t (fee_yield, volatility, p_stress, tvl_usd, ...)."""
        ...


def purged_rows(fs: Any, upto: pd.Timestamp) -> np.ndarray:
    """Rows whose label horizon (t, t + h] ended at or before `upto` (bool mask over fs rows)."""
    ts = pd.to_datetime(fs.labels["timestamp"])
    return ((ts + fs.horizon) <= upto).to_numpy()


@dataclass
class BaselineProvider:
    """Causal baseline: trailing fee yield and volatility EWMAs, stress base rate from past labels.

    Parameters
    ----------
    market : the engine's wide panel arrays (`MarketData`).
    horizon_bars : label horizon in panel periods; fee yield is scaled to it.
    halflife_bars : EWMA half-life in periods (default: one horizon).
    prior_weight : pseudo-count shrinking each pool's stress rate towards the pooled rate.
    """

    market: Any
    horizon_bars: int
    halflife_bars: float | None = None
    prior_weight: float = 20.0
    rate_: pd.Series | None = None
    _lab: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        """Precompute the causal trailing statistics (each row uses rows at or before it)."""
        m = self.market
        hl = self.halflife_bars or max(2.0, float(self.horizon_bars))
        tvl_prev = pd.DataFrame(m.tvl).shift(1)
        rate = pd.DataFrame(np.where(m.missing, np.nan, m.fees)) / tvl_prev.where(tvl_prev > 0)
        self._fee = rate.ewm(halflife=hl, ignore_na=True).mean().to_numpy()
        r2 = pd.DataFrame(np.where(m.missing, np.nan, m.logret ** 2))
        self._var = r2.ewm(halflife=hl, ignore_na=True).mean().to_numpy()
        self._var_long = r2.expanding(min_periods=2).mean().to_numpy()

    def fit(self, fs: Any, upto: pd.Timestamp) -> BaselineProvider:
        """Stress base rate per pool from labels whose horizon ended by `upto`."""
        if self._lab is None:  # label ends and pool codes, computed once per run
            lab = fs.labels
            ends = (pd.DatetimeIndex(lab["timestamp"]) + fs.horizon).asi8
            codes = pd.Index(self.market.pools).get_indexer(pd.Index(lab["pool_id"]))
            y = lab["fwd_stress"].to_numpy(float)
            ok = np.isfinite(y) & (codes >= 0)
            self._lab = (ends[ok], codes[ok], y[ok])
        ends, codes, y = self._lab
        keep = ends <= pd.Timestamp(upto).value
        n_p = len(self.market.pools)
        cnt = np.bincount(codes[keep], minlength=n_p).astype(float)
        pos = np.bincount(codes[keep], weights=y[keep], minlength=n_p)
        pooled = float(pos.sum() / cnt.sum()) if cnt.sum() else 0.0
        rate = (pos + self.prior_weight * pooled) / (cnt + self.prior_weight)
        self.rate_ = pd.Series(rate, index=self.market.pools)
        return self

    def predict_pools(self, fs: Any, t: pd.Timestamp) -> pd.DataFrame:
        """Fee yield per horizon, annualised volatility and P(stress) per pool at t."""
        if self.rate_ is None:
            raise RuntimeError("BaselineProvider.predict_pools called before fit")
        m = self.market
        i = m.index_of(t)
        fee = np.nan_to_num(self._fee[i], nan=0.0) * self.horizon_bars
        var = self._var[i]
        vol = np.sqrt(np.nan_to_num(var, nan=0.0) * m.periods_per_year)
        ratio = np.clip(np.nan_to_num(var / self._var_long[i], nan=1.0), 0.25, 4.0)
        p = np.clip(self.rate_.to_numpy(float) * ratio, 0.0, 1.0)
        return pd.DataFrame({
            "fee_yield": np.maximum(fee, 0.0), "fee_yield_q10": 0.5 * fee,
            "fee_yield_q90": 1.5 * fee, "volatility": vol, "volatility_q90": 1.5 * vol,
            "p_stress": p, "tvl_usd": np.nan_to_num(m.tvl[i], nan=0.0),
        }, index=pd.Index(m.pools, name="pool_id"))


@dataclass
class BundleProvider:
    """Adapter from models.forecasts.ForecastBundle (baseline, lightgbm or torch models)."""

    kind: str
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    bundle_: Any = None
    _x: pd.DataFrame | None = None

    def _matrix(self, fs: Any) -> pd.DataFrame:
        """Model inputs for every feature row (computed once per run)."""
        if self._x is None:
            from models.forecasts import model_matrix

            self._x = model_matrix(fs)
        return self._x

    def fit(self, fs: Any, upto: pd.Timestamp) -> BundleProvider:
        """Refit every target on purged rows before `upto`."""
        from models.base import ForecastError
        from models.forecasts import ForecastBundle

        x = self._matrix(fs)
        keep = purged_rows(fs, upto)
        bundle = ForecastBundle(kind=self.kind, freq=fs.freq,
                                horizon_periods=fs.horizon_periods, seed=self.seed,
                                **self.params)
        try:
            bundle.fit(x.loc[keep], fs.labels.loc[keep], upto=upto)
        except ForecastError:  # too little labelled history yet: keep the last fitted models
            return self
        self.bundle_ = bundle
        return self

    def predict_pools(self, fs: Any, t: pd.Timestamp) -> pd.DataFrame | None:
        """Bundle forecasts for the feature rows at t (None until a fit has succeeded)."""
        if self.bundle_ is None:
            return None
        x = self._matrix(fs)
        ts = pd.to_datetime(fs.features["timestamp"])
        # sequence models read each pool's recent rows; the others use the row at t only
        daily = freq_step(fs.freq) >= pd.Timedelta(days=1)
        lookback = int(self.params.get("lookback", 14 if daily else 24))
        step = freq_step(fs.freq)
        start = t - (lookback - 1) * step if self.kind == "torch" else t
        rows = x.loc[((ts >= start) & (ts <= t)).to_numpy()]
        return self.bundle_.predict_pools(rows)
