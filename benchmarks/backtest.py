"""Backtest speed: 200 pools x 1 year hourly, daily reallocation, allocator and four baselines.

Prints seconds and panel rows per second of `run_backtest` (baseline forecasts; simulation and
feature building are timed separately and excluded), with rebalancing swaps charged through
each pool alone and routed over the pair's pools (`BacktestConfig.routed_costs`, the
default); `--routed` / `--single-pool` time one of the two. A small backtest runs first,
untimed: it loads (or, on a fresh machine, compiles) the numba kernels and the lazy imports.
Usage:
    .venv/bin/python benchmarks/backtest.py [--pools 200] [--days 365] [--no-allocator]
        [--oracle] [--routed | --single-pool]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

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


def _strategies(cfg: BacktestConfig, horizon: Any, args: argparse.Namespace
                ) -> list[Strategy]:
    """The timed strategies: the allocator (unless --no-allocator), four baselines, the oracle
    with --oracle."""
    baselines: list[Strategy] = [EqualWeight(), TvlWeighted(), TrailingApr(), Hold()]
    out: list[Strategy] = baselines if args.no_allocator else [
        AllocatorStrategy(allocator_config(cfg, horizon)), *baselines]
    if args.oracle:
        out.append(HindsightOracle())
    return out


def _run(panel: Any, truth: Any, fs: Any, routed: bool, args: argparse.Namespace
         ) -> tuple[float, Any]:
    """Seconds of one `run_backtest` and its result (the forecast provider is built first)."""
    cfg = BacktestConfig(model="baseline", rebalance="24h", retrain="7d", min_train="14d",
                         write_report=False, routed_costs=routed)
    strategies = _strategies(cfg, fs.horizon, args)
    # the causal baseline provider: forecasts cost no model training
    market = MarketData.from_panel(panel, fs)
    provider = BaselineProvider(market, market.horizon_bars)
    t0 = time.perf_counter()
    res = run_backtest(panel, fs, cfg, truth=truth, strategies=strategies, provider=provider)
    return time.perf_counter() - t0, res


def _report(label: str, secs: float, res: Any, rows: int) -> None:
    """Print one timed run's figures."""
    n_dec = res.weights["timestamp"].nunique()
    target_rate = TARGET_ROWS / TARGET_SECONDS
    print(f"backtest, {label}: {secs:.2f} s   target < {TARGET_SECONDS:.0f} s "
          f"(allocator + four baselines, 200 pools x 1 year hourly)")
    print(f"  {rows:,} rows x {len(res.metrics)} strategies, {n_dec} reallocations -> "
          f"{rows / secs:,.0f} rows/s   target >= {target_rate:,.0f} rows/s")
    print("  breakdown: " + ", ".join(f"{k} {v:.2f}" for k, v in res.timings.items()))
    alloc_s = res.timings["decide_s"]
    print(f"  excluding strategy decisions and trades (allocator solves, ledger trades): "
          f"{secs - alloc_s:.2f} s -> {rows / max(secs - alloc_s, 1e-9):,.0f} rows/s")
    if n_dec:
        room = max(TARGET_SECONDS - (secs - alloc_s), 0.0) / n_dec * 1e3
        print(f"  strategy decisions and trades: {alloc_s / n_dec * 1e3:.1f} ms per "
              f"reallocation (all strategies)   target <= {room:.1f} ms (what the "
              f"{TARGET_SECONDS:.0f} s budget leaves after the rest of this run)")


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pools", type=int, default=200)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--no-allocator", action="store_true",
                    help="skip allocator and oracle (times the engine and accounting alone)")
    ap.add_argument("--oracle", action="store_true",
                    help="add the hindsight plans (one convex program over every decision)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--routed", action="store_true",
                      help="time routed swap costs only (the BacktestConfig default)")
    mode.add_argument("--single-pool", action="store_true",
                      help="time single-pool swap costs only")
    args = ap.parse_args()
    modes = [False] if args.single_pool else [True] if args.routed else [False, True]

    t0 = time.perf_counter()
    small, small_truth = simulate_market(n_pools=12, days=20, seed=1, freq="1h")
    small_fs = build_features(small)
    for routed in modes:  # untimed: numba kernels load (or compile), lazy imports run
        _run(small, small_truth, small_fs, routed, args)
    t1 = time.perf_counter()
    panel, truth = simulate_market(n_pools=args.pools, days=args.days, seed=0, freq="1h")
    t2 = time.perf_counter()
    fs = build_features(panel)
    t3 = time.perf_counter()
    rows = len(panel.frame)
    print(f"warm-up (untimed small backtest: numba kernels, imports): {t1 - t0:.1f} s, "
          f"simulate: {t2 - t1:.1f} s, features: {t3 - t2:.1f} s ({rows:,} panel rows)")
    secs = {}
    for routed in modes:
        label = "routed swap costs" if routed else "single-pool swap costs"
        secs[routed], res = _run(panel, truth, fs, routed, args)
        _report(label, secs[routed], res, rows)
    if len(secs) == 2:
        extra = secs[True] - secs[False]
        print(f"routed swap costs add {extra:.2f} s ({extra / secs[False]:+.0%}) to the "
              f"single-pool run")


if __name__ == "__main__":
    main()
