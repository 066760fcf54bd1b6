"""Cost curve: how the feature build and the backtest scale with pools and years (hourly).

Jobs:

- ``features``: ``build_features`` on a simulated panel held in memory (the build alone);
- ``features-stored``: what ``lpa features build`` does at scale: the simulated panel is
  stored first (untimed), then read, built partition by partition and written as the feature
  store (``benchmarks/scale.py``'s partitioned measurement); its memory stays bounded, so it
  runs at every size;
- ``backtest``: the walk-forward backtest of the allocator and four baselines on baseline
  forecasts, daily reallocation (features built untimed).

Runs each (job, pools, years) in its own process, smallest first, and prints seconds, rows/s,
the process's peak memory and the scaling exponent (d log seconds / d log rows) against the
previous size of the same job and years. A combination whose memory, extrapolated from the
largest run of that job so far, would exceed the limit is skipped and says so. Usage:
    .venv/bin/python benchmarks/cost_curve.py [--jobs features,features-stored,backtest]
        [--pools 50,200,1000] [--years 1,2] [--mem-limit-gib G]
"""

from __future__ import annotations

import argparse
import json
import importlib.util
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

# benchmarks/features.py is named like the `features` package: keep this folder off the path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

TARGETS = {
    "features": "target >= 2M rows/s",
    "features-stored": "target: 1,000 pools x 2 years in < 60 s and < 4 GiB",
    "backtest": "target < 10 s at 200 pools x 1 year (allocator + four baselines)",
}


def _features(pools: int, days: int) -> tuple[int, float]:
    from features.build import build_features
    from features.sources.simulator import simulate_market

    build_features(simulate_market(n_pools=3, days=5, seed=1)[0])  # load the kernels
    panel, _ = simulate_market(n_pools=pools, days=days, seed=0)
    t0 = time.perf_counter()
    build_features(panel)
    return len(panel.frame), time.perf_counter() - t0


def _backtest(pools: int, days: int) -> tuple[int, float]:
    from features.build import build_features
    from features.sources.simulator import simulate_market
    from pipelines.backtest.engine import (
        BacktestConfig,
        MarketData,
        allocator_config,
        run_backtest,
    )
    from pipelines.backtest.providers import BaselineProvider
    from pipelines.backtest.strategies import (
        AllocatorStrategy,
        EqualWeight,
        Hold,
        Strategy,
        TrailingApr,
        TvlWeighted,
    )

    cfg = BacktestConfig(model="baseline", rebalance="24h", retrain="7d", min_train="14d",
                         write_report=False)

    def once(n: int, d: int) -> tuple[int, float]:
        panel, truth = simulate_market(n_pools=n, days=d, seed=0, freq="1h")
        fs = build_features(panel)
        strategies: list[Strategy] = [AllocatorStrategy(allocator_config(cfg, fs.horizon)),
                                      EqualWeight(), TvlWeighted(), TrailingApr(), Hold()]
        market = MarketData.from_panel(panel, fs)
        provider = BaselineProvider(market, market.horizon_bars)
        t0 = time.perf_counter()
        run_backtest(panel, fs, cfg, truth=truth, strategies=strategies, provider=provider)
        return len(panel.frame), time.perf_counter() - t0

    once(4, 30)  # load the compiled kernels
    return once(pools, days)


def _scale() -> ModuleType:
    """benchmarks/scale.py, loaded by path (this folder is off the import path)."""
    spec = importlib.util.spec_from_file_location("scale_benchmark",
                                                  Path(__file__).with_name("scale.py"))
    if spec is None or spec.loader is None:
        raise RuntimeError("benchmarks/scale.py not found beside this script")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def features_stored(pools: int, days: int) -> dict[str, float]:
    """Store a simulated panel (untimed), then time its partitioned build in a fresh
    interpreter: rows, seconds and that interpreter's peak MiB."""
    scale = _scale()
    root = Path(tempfile.mkdtemp(prefix=f"lpa-curve-{pools}x{days}-"))
    try:
        _, rows = scale.simulate_stored(pools, days, root)
        out = scale.measure_in_child("partitioned", root, 2)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if out.get("error"):
        raise RuntimeError(f"partitioned build failed: {out['message']}")
    return {"rows": rows, "seconds": out["seconds"], "peak_mib": out["peak_gib"] * 1024}


def run_one(job: str, pools: int, days: int) -> None:
    """Time one job in this process and print a JSON line (rows, seconds, peak MiB)."""
    rows, secs = {"features": _features, "backtest": _backtest}[job](pools, days)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": secs, "peak_mib": peak}))


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 8.0


def main() -> None:
    """Run the grid of sizes, each in a child process, and print the curve."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", default="features,features-stored,backtest")
    ap.add_argument("--pools", default="50,200,1000")
    ap.add_argument("--years", default="1,2")
    ap.add_argument("--mem-limit-gib", type=float, default=None,
                    help="skip runs predicted above this (default: half the available memory)")
    ap.add_argument("--one", choices=["features", "backtest"], help=argparse.SUPPRESS)
    ap.add_argument("--days", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run_one(args.one, int(args.pools), args.days)
        return
    limit = args.mem_limit_gib or 0.5 * _available_gib()
    pools = sorted(int(p) for p in args.pools.split(","))
    years = sorted(int(y) for y in args.years.split(","))
    print(f"memory limit for a run: {limit:.1f} GiB (the machine is shared: timings move with "
          "its load)")
    print(f"{'job':15s} {'pools':>5s} {'years':>5s} {'rows':>11s} {'seconds':>8s} "
          f"{'rows/s':>10s} {'peak MiB':>9s} {'exponent':>8s}")
    for job in args.jobs.split(","):
        per_row: float | None = None  # peak bytes per row of this job's largest run so far
        for y in years:
            prev: tuple[int, float] | None = None
            for p in pools:
                rows = p * y * 365 * 24
                need = per_row * rows / 2**30 if per_row and job != "features-stored" else 0.0
                if need > limit:
                    print(f"{job:15s} {p:5d} {y:5d} {rows:11,d}  skipped: needs ~{need:.1f} GiB "
                          f"(extrapolated), above the {limit:.1f} GiB limit")
                    continue
                if job == "features-stored":
                    try:
                        r = features_stored(p, 365 * y)
                    except (RuntimeError, subprocess.CalledProcessError) as exc:
                        print(f"{job:15s} {p:5d} {y:5d} {rows:11,d}  failed: {exc}")
                        continue
                else:
                    cmd = [sys.executable, __file__, "--one", job, "--pools", str(p),
                           "--days", str(365 * y)]
                    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                    if done.returncode != 0:
                        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
                        print(f"{job:15s} {p:5d} {y:5d} {rows:11,d}  failed: {tail}")
                        continue
                    r = json.loads(done.stdout.strip().splitlines()[-1])
                per_row = max(per_row or 0.0, r["peak_mib"] * 2**20 / r["rows"])
                slope = (math.log(r["seconds"] / prev[1]) / math.log(r["rows"] / prev[0])
                         if prev else float("nan"))
                prev = (r["rows"], r["seconds"])
                print(f"{job:15s} {p:5d} {y:5d} {r['rows']:11,d} {r['seconds']:8.2f} "
                      f"{r['rows'] / r['seconds']:10,.0f} {r['peak_mib']:9,.0f} "
                      f"{slope:8.2f}", flush=True)
        print(f"{job}: {TARGETS[job]}")


if __name__ == "__main__":
    main()
