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


TARGET_SECONDS = 10.0
TARGET_ROWS = 200 * 365 * 24  # the default run: 200 pools x 1 year hourly


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
    target_rate = TARGET_ROWS / TARGET_SECONDS
    print(f"backtest: {secs:.2f} s   target < {TARGET_SECONDS:.0f} s "
          f"(allocator + four baselines, 200 pools x 1 year hourly)")
    print(f"  {rows:,} rows x {len(res.metrics)} strategies, {n_dec} reallocations -> "
          f"{rows / secs:,.0f} rows/s   target >= {target_rate:,.0f} rows/s")
    print("breakdown: " + ", ".join(f"{k} {v:.2f}" for k, v in res.timings.items()))
    alloc_s = res.timings["decide_s"]
    print(f"excluding strategy decisions (allocator solves): {secs - alloc_s:.2f} s "
          f"-> {rows / max(secs - alloc_s, 1e-9):,.0f} rows/s   "
          f"target >= {target_rate:,.0f} rows/s")
    if n_dec:
        room = max(TARGET_SECONDS - (secs - alloc_s), 0.0) / n_dec * 1e3
        print(f"strategy decisions: {alloc_s / n_dec * 1e3:.1f} ms per reallocation (all "
              f"strategies)   target <= {room:.1f} ms (what the {TARGET_SECONDS:.0f} s budget "
              f"leaves after the rest of this run, per reallocation)")


if __name__ == "__main__":
    main()
