"""Walk-forward backtest: retrain on an expanding purged window, reallocate, account per period.

Timing: a decision at period t sees rows stamped <= t (a row is known once its period ends),
trades execute at the start of period t + 1 and earn fees from t + 1 on, never the fees of the
bar that was seen. Models train only on rows whose label horizon (s, s + h] ended by t.
Every strategy is booked by the same ledger (`book.StrategyBook`) with the economics core.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.schema import Panel
from models.allocation import AllocatorConfig
from models.allocation.oracle import Plan
from pipelines.backtest.book import StrategyBook
from pipelines.backtest.config import BacktestConfig, BacktestResult
from pipelines.backtest.decisions import DecisionFitter
from pipelines.backtest.hindsight import oracle_weights, realised_inputs
from pipelines.backtest.market import MarketData
from pipelines.backtest.metrics import (
    OracleBeatenError,
    all_metrics,
    check_oracle,
    preemption_table,
    strategy_metrics,
    stress_bars_from_labels,
    stress_bars_from_truth,
    window_returns,
)
from pipelines.backtest.providers import BaselineProvider, BundleProvider, ForecastProvider
from pipelines.backtest.strategies import (
    AllocatorStrategy,
    Capped,
    DecisionContext,
    EqualWeight,
    HindsightOracle,
    Hold,
    Strategy,
    TrailingApr,
    TvlWeighted,
    default_strategies,
)

__all__ = ["BacktestConfig", "BacktestResult", "run_backtest", "make_provider", "MarketData",
           "StrategyBook"]


def make_provider(kind: str, market: MarketData, fs: Any, seed: int = 0,
                  reselect_every: int = 1) -> ForecastProvider:
    """Forecast provider for a model kind (ForecastBundle adapter)."""
    return BundleProvider(kind, seed=seed, reselect_every=reselect_every)


def allocator_config(cfg: BacktestConfig, horizon: pd.Timedelta) -> AllocatorConfig:
    """AllocatorConfig from the backtest's capital, costs, label horizon and overrides."""
    base: dict[str, Any] = {"capital_usd": cfg.capital_usd, "gas_usd": cfg.gas_usd,
                            "min_trade_usd": cfg.min_trade_usd,
                            "routed_costs": cfg.routed_costs,
                            "horizon_years": pd.Timedelta(horizon) / pd.Timedelta(days=365)}
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


def _refit_times(market: MarketData, bars: np.ndarray, retrain: pd.Timedelta
                 ) -> list[pd.Timestamp]:
    """Decision times at which the provider refits: the first, then each one at least
    `retrain` after the last refit."""
    out: list[pd.Timestamp] = []
    for i in bars:
        t = market.times[i]
        if not out or t - out[-1] >= retrain:
            out.append(t)
    return out


def _reads_hindsight(s: Strategy) -> bool:
    """False for the standard strategies that never read `DecisionContext.perfect`."""
    if type(s) is AllocatorStrategy:
        return s.source == "perfect"
    if type(s) is Capped:
        return _reads_hindsight(s.inner)
    return type(s) not in (EqualWeight, TvlWeighted, TrailingApr, Hold, HindsightOracle)


def _per_pool(values: pd.Series, pools: pd.Index) -> np.ndarray:
    """A pool-indexed series as an array in `pools` order (NaN where absent)."""
    pos = values.index.get_indexer(pools)
    out = values.to_numpy(float)[np.maximum(pos, 0)] if len(values) else np.zeros(len(pos))
    return np.where(pos >= 0, out, np.nan)


def _prefit(provider: ForecastProvider | None, fs: Any, refits: list[pd.Timestamp],
            timings: dict[str, float]) -> None:
    """With a Dask client (``models.gbm_dask.use_dask``) or a task pool (``models.pool.use_pool``)
    active, fit the provider at every refit time as tasks before the run; the run loop then
    takes those fits."""
    prefit = getattr(provider, "prefit", None)
    if prefit is None or not refits:
        return
    from models.gbm_dask import active_client  # LightGBM loads only for a cluster run
    from models.pool import active_pool

    client = active_client() or active_pool()
    if client is None:
        return
    s0 = time.perf_counter()
    prefit(fs, refits, client)
    timings["fit_s"] += time.perf_counter() - s0


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
    workdir : when given, writes workdir/reports/<run-id>/ and logs the run to MLflow.
    truth : simulator ground truth; realised stress windows come from it when given,
        otherwise from the forward stress labels.
    provider : forecast provider (default: from `config.model`); strategies: override the
        standard strategies (tests, benchmarks).

    Inside ``models.gbm_dask.use_dask(client)`` a provider with a ``prefit`` method (the
    bundle provider) fits every refit time as tasks on the cluster before the run loop; each
    fit uses only the rows purged before its own time, so the run is the single-process one.

    Returns
    -------
    BacktestResult with metrics (strategy -> metric -> value, fractions of starting capital).
    Raises RuntimeError when a strategy beats the hindsight oracle (the economics would not be
    one piece).
    """
    cfg = config or BacktestConfig()
    t0 = time.perf_counter()
    acfg = allocator_config(cfg, fs.horizon)
    market = MarketData.from_panel(panel, fs, width=acfg.v3_width)
    bars, every = _decision_bars(market, cfg)
    _, retrain, _ = cfg.durations(market.freq)
    if strategies is None:
        strategies = default_strategies(acfg, cfg.top_k, cfg.apr_mode,
                                        with_baseline_forecasts=cfg.model != "baseline")
    names = {getattr(s, "name", "") for s in strategies}
    if provider is None and "allocator" in names:
        provider = make_provider(cfg.model, market, fs, cfg.seed, cfg.reselect_every)
    base_provider = (BaselineProvider(market, market.horizon_bars)
                     if "allocator_baseline_forecasts" in names else None)
    books = {s.name: StrategyBook(market, cfg.capital_usd, cfg.gas_usd, cfg.min_trade_usd,
                                  routed=cfg.routed_costs) for s in strategies}
    fitters = {s.name: DecisionFitter(acfg, cfg.decision_refit, cfg.decision_lookback,
                                      cfg.decision_trials, cfg.seed)
               for s in strategies if cfg.fit_decisions and isinstance(s, AllocatorStrategy)
               and s.source != "perfect"}
    plans: dict[str, Plan] = {}
    plan_notes: list[str] = []
    for name, objective in (("oracle", "net"), ("oracle_lp_alpha", "lp_alpha")):
        if name in names:
            try:
                plans[name] = oracle_weights(market, bars, acfg, cfg.capital_usd, objective)
            except RuntimeError as exc:  # the oracle then holds cash: the bound check fails
                plan_notes.append(f"{name}: {exc}")
    apr = market.trailing_apr(cfg.apr_window)
    p_stress = np.full(market.shape, np.nan, np.float32)
    timings = {"prepare_s": time.perf_counter() - t0, "fit_s": 0.0, "predict_s": 0.0,
               "decide_s": 0.0}
    refits = set(_refit_times(market, bars, retrain)) if provider is not None else set()
    _prefit(provider, fs, sorted(refits), timings)
    hindsight = any(_reads_hindsight(s) for s in strategies)
    pool_index = pd.Index(market.pools)
    it: Any = bars
    if progress:
        from rich.progress import track

        it = track(bars, description="backtest", transient=True)
    for k, i in enumerate(it):
        t = market.times[i]
        for b in books.values():
            b.advance_to(i + 1)
        forecasts = baseline_fc = None
        if provider is not None:
            s0 = time.perf_counter()
            if t in refits:
                provider.fit(fs, t)
                if base_provider is not None:
                    base_provider.fit(fs, t)
            s1 = time.perf_counter()
            forecasts = provider.predict_pools(fs, t)
            if base_provider is not None:
                baseline_fc = base_provider.predict_pools(fs, t)
            timings["fit_s"] += s1 - s0
            timings["predict_s"] += time.perf_counter() - s1
            if forecasts is not None:
                p_stress[i + 1: i + 1 + every] = _per_pool(forecasts["p_stress"], pool_index)
        end = int(bars[k + 1]) + 1 if k + 1 < len(bars) else market.n_bars
        perfect = realised_inputs(market, i, end) if hindsight else None
        tvl_now = np.nan_to_num(market.tvl[i])
        s0 = time.perf_counter()
        for s in strategies:
            book = books[s.name]
            fitter = fitters.get(s.name)
            if fitter is not None and isinstance(s, AllocatorStrategy):
                fitter.maybe_fit(market, k, int(i))
                s.config = fitter.config()
                fitter.record(int(i), forecasts if s.source == "forecasts" else baseline_fc)
            ctx = DecisionContext(
                t=t, pools=market.pools, available=market.available[i],
                tvl_usd=tvl_now, trailing_apr=apr[i],
                current=book.weights_now(), meta=market.meta, first=k == 0,
                forecasts=forecasts, baseline_forecasts=baseline_fc, perfect=perfect,
                plan=plans[s.name].weights[k] if s.name in plans else None, equity=book.equity_now)
            book.execute(i + 1, s.decide(ctx))
        timings["decide_s"] += time.perf_counter() - s0
    for b in books.values():
        b.advance_to(market.n_bars)
    timings["fit_decisions_s"] = sum(f.seconds for f in fitters.values())
    res = _finish(cfg, market, books, strategies, bars, every, truth, p_stress, timings, t0,
                  workdir, {n: f.table() for n, f in fitters.items()}, plan_notes,
                  {n: p.bound for n, p in plans.items()})
    return res


def _finish(cfg: BacktestConfig, market: MarketData, books: dict[str, StrategyBook],
            strategies: list[Strategy], bars: np.ndarray, every: int,
            truth: pd.DataFrame | None, p_stress: np.ndarray, timings: dict[str, float],
            t0: float, workdir: Path | None, decision_fits: dict[str, pd.DataFrame],
            notes: list[str], bounds: dict[str, float] | None = None) -> BacktestResult:
    """Metrics, tables, report and the oracle check of a finished run."""
    start = int(bars[0]) + 1
    periods = pd.concat([b.frame(name, start) for name, b in books.items()], ignore_index=True)
    traded = [b.weights_frame(name) for name, b in books.items() if b.trades]
    weights = (pd.concat(traded, ignore_index=True) if traded
               else next(iter(books.values())).weights_frame("none"))
    if truth is not None and len(truth):
        stress = stress_bars_from_truth(truth, market.times, market.pools)
    else:
        stress = stress_bars_from_labels(market.label("fwd_stress"), market.horizon_bars)
    stress_rows = np.asarray(stress[start:].any(axis=1), bool)
    metrics = all_metrics(periods, cfg.capital_usd, market.freq)
    for name, bound in (bounds or {}).items():
        if name in metrics:  # the plan's optimum: no strategy within the caps books more
            metrics[name]["plan_bound"] = bound
    for name in metrics:
        g = periods[periods["strategy"] == name]
        metrics[name]["stress_return"] = strategy_metrics(
            g, cfg.capital_usd, market.freq, stress_rows)["stress_return"]
    # 1 and 24 periods before each onset, and whole rebalance periods
    lags = sorted({1, 24, *(k * every for k in range(1, cfg.preemption_lags + 1))})
    held = {n: b.held_weights() for n, b in books.items()}
    pre = preemption_table(held, stress, market.available, lags, p_stress)
    pre.insert(1, "lag_rebalances", np.asarray(lags, float) / every)
    for n in metrics:
        if len(pre) and np.isfinite(pre["equal_share"].iloc[0]) and pre["equal_share"].iloc[0]:
            metrics[n]["pre_stress_weight_ratio"] = float(
                pre[f"w_{n}"].iloc[0] / pre["equal_share"].iloc[0])
    fits = [t.assign(strategy=n) for n, t in decision_fits.items() if len(t)]
    tables = {"windows": window_returns(periods, cfg.capital_usd, stress, market.times),
              "decision_fits": pd.concat(fits, ignore_index=True) if fits else pd.DataFrame(),
              "fee_share_source": pd.DataFrame({"pool_id": list(market.fee_share_source),
                                                "source": list(market.fee_share_source.values())})}
    timings["total_s"] = time.perf_counter() - t0
    fallbacks = [f for s in strategies for f in getattr(s, "fallbacks", [])]
    run_id = cfg.run_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    res = BacktestResult(metrics=metrics, periods=periods, weights=weights, preemption=pre,
                         config=cfg, run_id=run_id, timings=timings, fallbacks=fallbacks,
                         tables=tables)
    beaten: OracleBeatenError | None = None
    try:
        res.warnings = notes + check_oracle(metrics)
    except OracleBeatenError as exc:  # reported, then raised once the report is written
        beaten, res.warnings = exc, [*notes, str(exc)]
    if workdir is not None and cfg.write_report:
        from pipelines.backtest.report import log_to_mlflow, write_report

        res.report_dir = write_report(res, Path(workdir), market, stress, held["allocator"]
                                      if "allocator" in held else None)
        if cfg.log_mlflow:
            log_to_mlflow(res, Path(workdir))
    if beaten is not None and cfg.oracle_check:
        raise beaten
    return res
