"""GARCH(1,1) speed: the compiled fit and forecast against arch's fit and the Python loop.

Times, on 30 simulated GARCH series x 3000 returns (median of 3 runs), `garch_params` against
`garch_params_arch` (the ``arch`` package) and `garch_forecast` against the pure-Python variance
recursion it replaced, prints milliseconds per series and the ratios, and the largest
differences from arch seen: the log-likelihood shortfall at our estimate (relative) and the
relative gap between the annualised forecasts of the two parameter sets. One untimed call
first loads (or, on a fresh machine, compiles) the numba kernels.
Usage:
    .venv/bin/python benchmarks/garch.py [--series 30] [--rows 3000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import sys as _sys
from pathlib import Path as _Path

# benchmarks/features.py is named like the `features` package: keep this folder off the path
_sys.path = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from models.garch import (  # noqa: E402
    garch_forecast,
    garch_loglik,
    garch_params,
    garch_forecast_reference,
    garch_params_arch,
)

H, PPY = 24, 8760.0  # a day ahead on hourly returns


def simulate(n_series: int, n_rows: int, seed: int = 0) -> list[np.ndarray]:
    """GARCH(1,1) hourly-like return paths with parameters drawn per series."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_series):
        alpha = rng.uniform(0.02, 0.2)
        beta = rng.uniform(0.5, 0.97 - alpha)
        omega = rng.uniform(1e-7, 1e-5) * (1 - alpha - beta)
        z = rng.standard_normal(n_rows)
        r, s2 = np.empty(n_rows), omega / (1 - alpha - beta)
        for t in range(n_rows):
            r[t] = 1e-5 + np.sqrt(s2) * z[t]
            s2 = omega + alpha * (r[t] - 1e-5) ** 2 + beta * s2
        r[rng.random(n_rows) < 0.02] = np.nan  # missing periods
        out.append(r)
    return out


def median_seconds(fn: Callable[[], Any], runs: int) -> float:
    """Median wall time of fn over runs calls, seconds."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=30)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    series = simulate(args.series, args.rows)
    garch_forecast(series[0], np.nan, garch_params(series[0]) or {}, H, PPY)  # load kernels

    new: list[Any] = []
    old: list[Any] = []
    fit_new = median_seconds(lambda: new.__setitem__(slice(None), map(garch_params, series)),
                             args.runs)
    fit_old = median_seconds(lambda: old.__setitem__(slice(None),
                                                     map(garch_params_arch, series)), args.runs)
    inits = [float(np.nanvar(r)) for r in series]
    fc_new = median_seconds(lambda: [garch_forecast(r, v, p, H, PPY)
                                     for r, v, p in zip(series, inits, new, strict=True)],
                            args.runs)
    fc_old = median_seconds(lambda: [garch_forecast_reference(r, v, p, H, PPY)
                                     for r, v, p in zip(series, inits, new, strict=True)],
                            args.runs)

    ll_gap, fc_gap = -np.inf, 0.0
    for r, v, pn, po in zip(series, inits, new, old, strict=True):
        ll_new, ll_old = garch_loglik(r, pn), garch_loglik(r, po)
        ll_gap = max(ll_gap, (ll_old - ll_new) / abs(ll_old))
        f_new, f_old = garch_forecast(r, v, pn, H, PPY), garch_forecast(r, v, po, H, PPY)
        fc_gap = max(fc_gap, float(np.max(np.abs(f_new / f_old - 1))))

    n = len(series)
    print(f"{n} series x {args.rows} returns, median of {args.runs} runs, ms per series")
    print(f"fit       arch {fit_old / n * 1e3:8.2f}   compiled {fit_new / n * 1e3:8.3f}"
          f"   ratio {fit_old / fit_new:6.1f}x")
    print(f"forecast  loop {fc_old / n * 1e3:8.2f}   compiled {fc_new / n * 1e3:8.3f}"
          f"   ratio {fc_old / fc_new:6.1f}x")
    print(f"vs arch: max loglik shortfall {ll_gap:.2e} relative (negative: ours higher), "
          f"max forecast gap {fc_gap:.2e} relative")


if __name__ == "__main__":
    main()
