"""Backtest speed: 200 pools x 1 year hourly, daily reallocation, allocator and four baselines.

Prints seconds and panel rows per second of `run_backtest` (baseline forecasts; simulation and
feature building are timed separately and excluded). Usage:
    .venv/bin/python benchmarks/backtest.py [--pools 200] [--days 365] [--no-allocator] [--oracle]
"""

from __future__ import annotations

import argparse
import time

import sys as _sys
from pathlib import Path as _Path

# benchmarks/features.py is named like the `features` package: keep this folder off the path
_sys.path = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]

from features.build import build_features  # noqa: E402
from features.sources.simulator import simulate_market  # noqa: E402
from pipelines.backtest.engine import (  # noqa: E402
    BacktestConfig,
    MarketData,
    allocator_config,
    run_backtest,
)
from pipelines.backtest.providers import BaselineProvider  # noqa: E402
from pipelines.backtest.strategies import (
    AllocatorStrategy,
    HindsightOracle,
    EqualWeight,
    Hold,
    Strategy,
    TrailingApr,
    TvlWeighted,
)


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pools", type=int, default=200)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--no-allocator", action="store_true",
                    help="skip allocator and oracle (times the engine and accounting alone)")
    ap.add_argument("--oracle", action="store_true",
                    help="add the hindsight plans (one convex program over every decision)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    panel, truth = simulate_market(n_pools=args.pools, days=args.days, seed=0, freq="1h")
    t1 = time.perf_counter()
    fs = build_features(panel)
    t2 = time.perf_counter()
    rows = len(panel.frame)
    print(f"simulate: {t1 - t0:.1f} s, features: {t2 - t1:.1f} s ({rows:,} panel rows)")

    cfg = BacktestConfig(model="baseline", rebalance="24h", retrain="7d", min_train="14d",
                         write_report=False)
    baselines: list[Strategy] = [EqualWeight(), TvlWeighted(), TrailingApr(), Hold()]
    strategies: list[Strategy] = baselines if args.no_allocator else [
        AllocatorStrategy(allocator_config(cfg, fs.horizon)), *baselines]
    if args.oracle:
        strategies.append(HindsightOracle())
    # the causal baseline provider: forecasts cost no model training
    market = MarketData.from_panel(panel, fs)
    provider = BaselineProvider(market, market.horizon_bars)
    t3 = time.perf_counter()
    res = run_backtest(panel, fs, cfg, truth=truth, strategies=strategies, provider=provider)
    secs = time.perf_counter() - t3
    n_dec = res.weights["timestamp"].nunique()
    print(f"backtest: {secs:.2f} s for {rows:,} rows x {len(res.metrics)} strategies, "
          f"{n_dec} reallocations -> {rows / secs:,.0f} rows/s")
    print("breakdown: " + ", ".join(f"{k} {v:.2f}" for k, v in res.timings.items()))
    print("target: < 10 s (allocator + four baselines, 200 pools x 1 year hourly)")
    alloc_s = res.timings["decide_s"]
    print(f"excluding strategy decisions (allocator solves): {secs - alloc_s:.2f} s "
          f"-> {rows / max(secs - alloc_s, 1e-9):,.0f} rows/s")


if __name__ == "__main__":
    main()
