"""Walk-forward backtest: retrain on an expanding purged window, reallocate, account per period.

Timing: a decision at period t sees rows stamped <= t (a row is known once its period ends),
trades execute at the start of period t + 1 and earn fees from t + 1 on, never the fees of the
bar that was seen. Models train only on rows whose label horizon (s, s + h] ended by t.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.schema import Panel, parse_duration
from pipelines.backtest import accounting
from pipelines.backtest.metrics import (
    all_metrics,
    periods_per_year,
    preemption_table,
    strategy_metrics,
    stress_bars_from_labels,
    stress_bars_from_truth,
)
from pipelines.backtest.strategies import (
    BaselineProvider,
    BundleProvider,
    DecisionContext,
    ForecastProvider,
    Strategy,
    default_strategies,
)

__all__ = ["BacktestConfig", "BacktestResult", "run_backtest", "make_provider", "MarketData",
           "StrategyBook"]


class BacktestConfig(BaseModel):
    """Walk-forward backtest settings ([backtest] table of a TOML config).

    Durations are strings such as "24h" or "7d"; None picks a default for the panel frequency.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: Literal["baseline", "lightgbm", "torch"] = "baseline"
    rebalance: str | None = Field(default=None, description="reallocation cadence "
                                  "(None: 24h on hourly panels, 7d on daily)")
    retrain: str | None = Field(default=None, description="model refit cadence "
                                "(None: 7d hourly, 28d daily)")
    min_train: str | None = Field(default=None, description="history before the first "
                                  "decision (None: 7d hourly, 90d daily)")
    capital_usd: float = Field(default=1_000_000.0, gt=0, description="starting capital, USD")
    allocator: dict[str, Any] = Field(default_factory=dict,
                                      description="AllocatorConfig keyword overrides")
    gas_usd: float = Field(default=5.0, ge=0, description="gas per pool touched, USD")
    min_trade_usd: float = Field(default=100.0, ge=0, description="smaller moves are skipped")
    top_k: int = Field(default=5, ge=1, description="pools held by trailing_apr (top_k mode)")
    apr_mode: Literal["top_k", "proportional"] = "top_k"
    apr_window: str = "7d"
    preemption_lags: int = Field(default=5, ge=1,
                                 description="rebalance periods looked at before stress onsets")
    seed: int = 0
    run_id: str | None = None
    log_mlflow: bool = True
    write_report: bool = True

    def durations(self, freq: str) -> tuple[pd.Timedelta, pd.Timedelta, pd.Timedelta]:
        """(rebalance, retrain, min_train) for a panel frequency."""
        hourly = freq == "1h"
        return (parse_duration(self.rebalance or ("24h" if hourly else "7d")),
                parse_duration(self.retrain or ("7d" if hourly else "28d")),
                parse_duration(self.min_train or ("7d" if hourly else "90d")))


@dataclass
class BacktestResult:
    """Outcome of a backtest: metrics, per-period values, executed weights, report location."""

    metrics: dict[str, dict[str, float]]
    periods: pd.DataFrame
    weights: pd.DataFrame
    preemption: pd.DataFrame
    config: BacktestConfig
    report_dir: Path | None = None
    run_id: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    fallbacks: list[tuple[pd.Timestamp, list[str]]] = field(default_factory=list)

    def summary_columns(self) -> list[str]:
        """Column names of `summary_rows`."""
        from pipelines.backtest.metrics import METRICS

        return ["strategy", *METRICS]

    def summary_rows(self) -> list[list[Any]]:
        """One row per strategy: name then every metric (fractions of starting capital)."""
        from pipelines.backtest.metrics import METRICS

        return [[s, *[float(m.get(k, float("nan"))) for k in METRICS]]
                for s, m in self.metrics.items()]


def _scatter(frame: pd.DataFrame, cols: list[str], times: pd.DatetimeIndex,
             pools: list[str]) -> dict[str, np.ndarray]:
    """Long (pool_id, timestamp) columns into (periods x pools) arrays, NaN where absent."""
    ti = times.get_indexer(pd.DatetimeIndex(frame["timestamp"]))
    pi = pd.Index(pools).get_indexer(pd.Index(frame["pool_id"].astype(str)))
    ok = (ti >= 0) & (pi >= 0)
    out = {}
    for c in cols:
        a = np.full((len(times), len(pools)), np.nan)
        if c in frame.columns:
            a[ti[ok], pi[ok]] = frame[c].to_numpy(float)[ok]
        out[c] = a
    return out


def _ffill(a: np.ndarray) -> np.ndarray:
    """Forward-fill NaN down the time axis (leading NaN stay)."""
    return pd.DataFrame(a).ffill().to_numpy()


@dataclass
class MarketData:
    """The panel and labels as (periods x pools) arrays plus per-bar LP value ratios."""

    times: pd.DatetimeIndex
    pools: list[str]
    freq: str
    meta: pd.DataFrame
    tvl: np.ndarray
    fees: np.ndarray
    missing: np.ndarray
    available: np.ndarray
    tvl_prev: np.ndarray
    logret: np.ndarray
    lp_ratio: np.ndarray
    hodl_ratio: np.ndarray
    lvr_rate: np.ndarray
    fee_tier: np.ndarray
    labels: dict[str, np.ndarray]
    horizon_bars: int
    fee_mult: np.ndarray | None = None  # liquidity per USD vs the pool x in-range share

    @property
    def step(self) -> pd.Timedelta:
        """One panel period."""
        return pd.Timedelta(self.freq)

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
        return periods_per_year(self.freq)

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
    def from_panel(cls, panel: Panel, fs: Any) -> MarketData:
        """Pivot a panel and its labels; compute per-bar LP and HODL value ratios."""
        f = panel.frame
        present = set(f["pool_id"].astype(str).unique())
        pools = [p for p in panel.pools if p in present]
        ts = pd.DatetimeIndex(f["timestamp"])
        times = pd.date_range(ts.min(), ts.max(), freq=panel.step)
        cols = ["close", "fees_usd", "tvl_usd", "token0_price_usd", "token1_price_usd"]
        a = _scatter(f.assign(miss=f["missing"].astype(float)), cols + ["miss"], times, pools)
        missing = (np.nan_to_num(a["miss"], nan=1.0) > 0) | ~np.isfinite(a["tvl_usd"])
        p0, p1 = _ffill(a["token0_price_usd"]), _ffill(a["token1_price_usd"])
        g0 = np.nan_to_num(p0 / np.vstack([p0[:1], p0[:-1]]), nan=1.0)
        g1 = np.nan_to_num(p1 / np.vstack([p1[:1], p1[:-1]]), nan=1.0)
        meta = panel.meta.assign(pool_id=panel.meta["pool_id"].astype(str)).set_index(
            "pool_id").loc[pools]
        paths = accounting.lp_paths(g0, g1, meta)
        tvl_f = _ffill(a["tvl_usd"])
        lab = _scatter(fs.labels, ["fwd_fee_yield", "fwd_volatility", "fwd_stress", "fwd_il"],
                       times, pools)
        return cls(
            times=times, pools=pools, freq=panel.freq, meta=meta, tvl=a["tvl_usd"],
            fees=np.where(missing, 0.0, np.nan_to_num(a["fees_usd"])), missing=missing,
            available=~missing & (np.nan_to_num(a["tvl_usd"]) > 0),
            tvl_prev=np.nan_to_num(np.vstack([tvl_f[:1], tvl_f[:-1]]), nan=0.0),
            logret=np.log(g0 / g1), lp_ratio=paths.lp, hodl_ratio=paths.hodl,
            lvr_rate=paths.lvr, fee_mult=paths.fee_mult,
            fee_tier=meta["fee_tier"].to_numpy(float), labels=lab,
            horizon_bars=max(1, int(pd.Timedelta(fs.horizon) // panel.step)))

    def trailing_apr(self, window: str) -> np.ndarray:
        """Trailing fee APR per bar and pool: window fees / mean window TVL, annualised."""
        n = max(2, int(parse_duration(window) // self.step))
        fees = pd.DataFrame(np.where(self.missing, np.nan, self.fees))
        tvl = pd.DataFrame(np.where(self.missing, np.nan, self.tvl))
        s = fees.rolling(n, min_periods=max(1, n // 2)).sum()
        m = tvl.rolling(n, min_periods=max(1, n // 2)).mean()
        return (s / m.where(m > 0)).to_numpy() * (self.periods_per_year / n)

    def oracle_inputs(self, i: int) -> pd.DataFrame:
        """Realised forward labels at bar i in the allocator's input format (hindsight)."""
        fee = np.clip(np.nan_to_num(self.labels["fwd_fee_yield"][i]), 0.0, None)
        vol = np.nan_to_num(self.labels["fwd_volatility"][i])
        return pd.DataFrame({
            "fee_yield": fee, "fee_yield_q10": fee, "fee_yield_q90": fee,
            "volatility": vol, "volatility_q90": vol,
            "p_stress": np.nan_to_num(self.labels["fwd_stress"][i]),
            "il": np.minimum(np.nan_to_num(self.labels["fwd_il"][i]), 0.0),
            "tvl_usd": np.nan_to_num(self.tvl[i]),
        }, index=pd.Index(self.pools, name="pool_id"))


_PARTS = ["market", "fee_income", "il", "lvr", "gas", "slippage", "turnover_usd"]


class StrategyBook:
    """One strategy's LP positions and cash, accounted bar by bar at the panel's frequency.

    Fees accrue to cash (diluted by our own liquidity: share = V / (TVL + V)); positions move
    with the pool invariant's value ratio, split into HODL `market` move and `il`. `lvr` is
    the loss-versus-rebalancing part of `il`, reported, not charged twice.
    """

    def __init__(self, market: MarketData, capital_usd: float, gas_usd: float,
                 min_trade_usd: float) -> None:
        self.m, self.capital = market, capital_usd
        self.gas_usd, self.min_trade = gas_usd, min_trade_usd
        n, p = market.shape
        self.value = np.zeros(p)
        self.cash = capital_usd
        self.cursor = 0
        self.parts = {k: np.zeros(n) for k in _PARTS}
        self.equity = np.full(n, capital_usd)
        self.cash_path = np.full(n, capital_usd)
        self.held = np.zeros((n, p), np.float32)
        self.trades: list[tuple[pd.Timestamp, np.ndarray]] = []

    def weights_now(self) -> np.ndarray:
        """Current drifted weights (fraction of equity; the rest is cash)."""
        eq = self.cash + self.value.sum()
        return self.value / eq if eq > 0 else np.zeros_like(self.value)

    def advance_to(self, b: int) -> None:
        """Account bars cursor .. b - 1 with the positions held now."""
        a, m = self.cursor, self.m
        if b <= a:
            return
        cp = np.cumprod(m.lp_ratio[a:b], axis=0)
        v_start = self.value * np.vstack([np.ones((1, cp.shape[1])), cp[:-1]])
        v_end = self.value * cp
        tvl = m.tvl_prev[a:b]
        mult = m.fee_mult[a:b] if m.fee_mult is not None else 1.0
        fee = accounting.diluted_fees(m.fees[a:b], tvl, v_start, mult)
        self.parts["market"][a:b] = (v_start * (m.hodl_ratio[a:b] - 1.0)).sum(1)
        self.parts["il"][a:b] = (v_start * (m.lp_ratio[a:b] - m.hodl_ratio[a:b])).sum(1)
        self.parts["lvr"][a:b] = -(v_start * m.lvr_rate[a:b]).sum(1)
        self.parts["fee_income"][a:b] = fee.sum(1)
        cash = self.cash + np.cumsum(fee.sum(1))
        eq = cash + v_end.sum(1)
        eq_start = np.concatenate([[self.cash + self.value.sum()], eq[:-1]])
        self.held[a:b] = v_start / np.where(eq_start > 0, eq_start, 1.0)[:, None]
        self.equity[a:b], self.cash_path[a:b] = eq, cash
        self.value, self.cash, self.cursor = v_end[-1], float(cash[-1]), b

    def execute(self, e: int, target: np.ndarray | None) -> None:
        """Trade to target weights at the start of bar e; charge gas and slippage there."""
        if target is None or e >= self.m.n_bars:
            return
        eq = self.cash + self.value.sum()
        w = np.clip(np.nan_to_num(np.asarray(target, float)), 0.0, None)
        if w.sum() > 1.0:
            w = w / w.sum()
        delta = w * eq - self.value
        delta[np.abs(delta) < self.min_trade] = 0.0
        gas, slip = accounting.trade_costs(
            delta, self.m.tvl_prev[e], self.m.fee_tier, self.gas_usd,
            chain=self.m.meta["chain"].to_numpy(), protocol=self.m.meta["protocol"].to_numpy())
        cost = gas + slip
        new = self.value + delta
        spare = eq - new.sum() - cost
        if spare < 0:  # fund costs by trimming buys pro rata
            buys = np.clip(delta, 0.0, None)
            cut = min(1.0, -spare / buys.sum()) if buys.sum() > 0 else 0.0
            new -= buys * cut
            spare = eq - new.sum() - cost
        self.parts["gas"][e] -= gas
        self.parts["slippage"][e] -= slip
        self.parts["turnover_usd"][e] += float(np.abs(new - self.value).sum())
        self.value, self.cash = new, spare
        self.trades.append((self.m.times[e], new / eq if eq > 0 else new * 0))

    def held_weights(self) -> np.ndarray:
        """Weights held during each bar (periods x pools)."""
        return self.held

    def frame(self, name: str, start: int) -> pd.DataFrame:
        """Per-period rows from bar `start` on: equity, cash and the signed USD components."""
        sl = slice(start, None)
        d = {"timestamp": self.m.times[sl], "strategy": name, "equity": self.equity[sl],
             "cash": self.cash_path[sl]}
        d.update({k: v[sl] for k, v in self.parts.items()})
        return pd.DataFrame(d)

    def weights_frame(self, name: str) -> pd.DataFrame:
        """Executed weights: one row per trade date, one column per pool."""
        if not self.trades:
            return pd.DataFrame(columns=["timestamp", "strategy", *self.m.pools])
        w = pd.DataFrame(np.vstack([x for _, x in self.trades]), columns=self.m.pools)
        w.insert(0, "strategy", name)
        w.insert(0, "timestamp", [t for t, _ in self.trades])
        return w


def make_provider(kind: str, market: MarketData, fs: Any, seed: int = 0) -> ForecastProvider:
    """Forecast provider for a model kind: the causal baseline, else a ForecastBundle adapter."""
    horizon_bars = max(1, int(fs.horizon // market.step))
    if kind == "baseline":
        try:
            import models.forecasts  # noqa: F401
        except ImportError:
            return BaselineProvider(market, horizon_bars)
    return BundleProvider(kind, seed=seed)


def _allocator_config(cfg: BacktestConfig, horizon: pd.Timedelta) -> Any:
    """AllocatorConfig from the backtest's capital, costs, label horizon and overrides."""
    from models.allocator import AllocatorConfig

    base: dict[str, Any] = {"capital_usd": cfg.capital_usd, "gas_usd": cfg.gas_usd,
                            "min_trade_usd": cfg.min_trade_usd,
                            "horizon_years": pd.Timedelta(horizon) / pd.Timedelta(days=365)}
    known = getattr(AllocatorConfig, "model_fields", None) or getattr(
        AllocatorConfig, "__dataclass_fields__", {})
    base = {k: v for k, v in base.items() if k in known}
    return AllocatorConfig(**{**base, **cfg.allocator})


def _decision_bars(market: MarketData, cfg: BacktestConfig) -> tuple[np.ndarray, int]:
    """Bar indices of decisions (each must leave a bar to execute in) and the cadence in bars."""
    rebalance, _, min_train = cfg.durations(market.freq)
    every = max(1, int(rebalance // market.step))
    first = int(market.times.searchsorted(market.times[0] + min_train))
    bars = np.arange(first, market.n_bars - 1, every)
    if bars.size == 0:
        raise ValueError(f"panel too short for a backtest: {market.n_bars} periods at "
                         f"{market.freq}, min_train {min_train}; lower min_train or use more data")
    return bars, every


def _context(market: MarketData, i: int, book: StrategyBook, first: bool,
             forecasts: pd.DataFrame | None, oracle: pd.DataFrame | None,
             apr: np.ndarray) -> DecisionContext:
    """Decision context at bar i for one strategy (rows <= i only, oracle labels aside)."""
    return DecisionContext(
        t=market.times[i], pools=market.pools, available=market.available[i],
        tvl_usd=np.nan_to_num(market.tvl[i]), trailing_apr=apr[i], current=book.weights_now(),
        meta=market.meta, first=first, forecasts=forecasts, oracle=oracle)


def run_backtest(
    panel: Panel,
    fs: Any,
    config: BacktestConfig | None = None,
    workdir: Path | None = None,
    truth: pd.DataFrame | None = None,
    progress: bool = False,
    provider: ForecastProvider | None = None,
    strategies: list[Strategy] | None = None,
) -> BacktestResult:
    """Walk-forward backtest of the allocator against baselines and the hindsight oracle.

    Parameters
    ----------
    panel : pool panel (hourly or daily).
    fs : FeatureSet built from the panel (features, forward labels, horizon).
    config : backtest settings (defaults for the panel frequency when None).
    workdir : when given, writes workdir/reports/<run-id>/ and logs the run to MLflow
        (experiment "lpa-backtest").
    truth : simulator ground truth; realised stress windows come from it when given,
        otherwise from the forward stress labels.
    provider : forecast provider (default: from `config.model`); strategies: override the six
        standard strategies (tests).

    Returns
    -------
    BacktestResult with metrics (strategy -> metric -> value, fractions of starting capital).
    """
    cfg = config or BacktestConfig()
    t0 = time.perf_counter()
    market = MarketData.from_panel(panel, fs)
    bars, every = _decision_bars(market, cfg)
    _, retrain, _ = cfg.durations(market.freq)
    if strategies is None:
        strategies = default_strategies(_allocator_config(cfg, fs.horizon), cfg.top_k,
                                        cfg.apr_mode)
    if provider is None and any(getattr(s, "name", "") == "allocator" for s in strategies):
        provider = make_provider(cfg.model, market, fs, cfg.seed)
    books = {s.name: StrategyBook(market, cfg.capital_usd, cfg.gas_usd, cfg.min_trade_usd)
             for s in strategies}
    apr = market.trailing_apr(cfg.apr_window)
    p_stress = np.full(market.shape, np.nan, np.float32)
    timings = {"prepare_s": time.perf_counter() - t0, "fit_s": 0.0, "predict_s": 0.0,
               "decide_s": 0.0}
    last_fit: pd.Timestamp | None = None
    it = bars
    if progress:
        from tqdm import tqdm

        it = tqdm(bars, desc="backtest", unit="decision")
    for k, i in enumerate(it):
        t = market.times[i]
        for b in books.values():
            b.advance_to(i + 1)
        forecasts = None
        if provider is not None:
            s0 = time.perf_counter()
            if last_fit is None or t - last_fit >= retrain:
                provider.fit(fs, t)
                last_fit = t
            s1 = time.perf_counter()
            forecasts = provider.predict_pools(fs, t)
            timings["fit_s"] += s1 - s0
            timings["predict_s"] += time.perf_counter() - s1
            ps = forecasts["p_stress"].reindex(market.pools).to_numpy(float)
            p_stress[i + 1: i + 1 + every] = ps
        oracle = market.oracle_inputs(i)
        s0 = time.perf_counter()
        for s in strategies:
            ctx = _context(market, i, books[s.name], k == 0, forecasts, oracle, apr)
            target = s.decide(ctx)
            books[s.name].execute(i + 1, target)
        timings["decide_s"] += time.perf_counter() - s0
    for b in books.values():
        b.advance_to(market.n_bars)
    start = int(bars[0]) + 1
    periods = pd.concat([b.frame(name, start) for name, b in books.items()], ignore_index=True)
    weights = pd.concat([b.weights_frame(name) for name, b in books.items()], ignore_index=True)
    if truth is not None and len(truth):
        stress = stress_bars_from_truth(truth, market.times, market.pools)
    else:
        stress = stress_bars_from_labels(market.label("fwd_stress"), market.horizon_bars)
    stress_rows = np.asarray(stress[start:].any(axis=1), bool)
    metrics = all_metrics(periods, cfg.capital_usd, market.freq)
    for name in metrics:
        g = periods[periods["strategy"] == name]
        metrics[name]["stress_return"] = strategy_metrics(
            g, cfg.capital_usd, market.freq, stress_rows)["stress_return"]
    lags = [k * every for k in range(1, cfg.preemption_lags + 1)]
    held = {n: b.held_weights() for n, b in books.items()}
    pre = preemption_table(held, stress[:], market.available, lags, p_stress)
    pre.insert(1, "lag_periods", np.arange(1, len(lags) + 1))
    for n in metrics:
        if len(pre) and np.isfinite(pre["equal_share"].iloc[0]) and pre["equal_share"].iloc[0]:
            metrics[n]["pre_stress_weight_ratio"] = float(
                pre[f"w_{n}"].iloc[0] / pre["equal_share"].iloc[0])
    timings["total_s"] = time.perf_counter() - t0
    fallbacks = [f for s in strategies for f in getattr(s, "fallbacks", [])]
    run_id = cfg.run_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    res = BacktestResult(metrics=metrics, periods=periods, weights=weights, preemption=pre,
                         config=cfg, run_id=run_id, timings=timings, fallbacks=fallbacks)
    if workdir is not None and cfg.write_report:
        from pipelines.backtest.report import log_to_mlflow, write_report

        res.report_dir = write_report(res, Path(workdir), market, stress, held["allocator"]
                                      if "allocator" in held else None)
        if cfg.log_mlflow:
            log_to_mlflow(res, Path(workdir))
    return res
