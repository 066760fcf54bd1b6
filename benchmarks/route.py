"""Benchmark: time to route a trade through 10 and 100 pools, and the slippage routing saves.

Timing (median of --repeat warm runs, after one cold run that compiles the cvxpy program):
`route()` end to end, and the convex program alone (built for CLARABEL directly, and through
cvxpy, the reference) on
- parallel pools of one pair (route() takes the closed form there);
- a simulated market of interconnected pools, WETH -> USDC with up to two hops.
Slippage: execution cost against the fee-free mid price (fees plus price impact) of trades
of 0.1 %, 1 % and 5 % of the pair's depth (summed `swap_depth_usd` of the pair's pools),
routed versus through the single best pool, on the simulated market and, when present, the
real daily export (WETH -> USDT).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys as _sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path as _Path

# benchmarks/features.py is named like the `features` package: keep this folder off the path
_sys.path = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]

import numpy as np
import pandas as pd

from features.sources.simulator import simulate_market
from models.routing import Network, PoolStates, build_network, route
from models.routing._flows import settle
from models.routing.conic import solve_conic
from models.routing.solver import ConvexSolution, solve_convex

SHARED = _Path(os.environ.get("LPA_SHARED_DATA",
                              _Path(__file__).resolve().parents[2] / "shared" / "data"))
FRACTIONS = (0.001, 0.01, 0.05)


def _median_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """(cold wall ms, median warm wall ms, median warm CPU ms) of a call.

    CPU time is what the call itself used: on a shared machine it is the steadier figure.
    """
    t0 = time.perf_counter()
    fn()
    cold = (time.perf_counter() - t0) * 1e3
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return cold, statistics.median(wall), statistics.median(cpu)


def parallel_pools(n: int, seed: int = 0) -> PoolStates:
    """n WETH/USDC pools of random TVL, fee tier and protocol, prices within 0.2 %."""
    rng = np.random.default_rng(seed)
    price = 2000.0 * (1 + rng.uniform(-0.002, 0.002, n))
    ids = [f"p{i}" for i in range(n)]
    rows = pd.DataFrame({"pool_id": ids, "timestamp": pd.Timestamp("2024-01-01", tz="UTC"),
                         "close": price, "tvl_usd": 10 ** rng.uniform(5, 8, n),
                         "token0_price_usd": price, "token1_price_usd": 1.0})
    meta = pd.DataFrame({"pool_id": ids, "chain": "ethereum",
                         "protocol": rng.choice(["uniswap_v2", "uniswap_v3"], n),
                         "token0": "WETH", "token1": "USDC",
                         "fee_tier": rng.choice([0.0005, 0.003, 0.01], n)})
    return PoolStates.from_panel(rows, meta)


def simulated(n: int, seed: int = 0) -> PoolStates:
    """Latest state of a simulated market of n interconnected pools (ethereum only)."""
    panel, _ = simulate_market(n_pools=n, days=3, seed=seed)
    states = PoolStates.from_panel(panel.frame, panel.meta)
    return states.subset(states.chain == "ethereum")


def _solve(solve: Callable[..., ConvexSolution], net: Network, amount: float,
           usd: np.ndarray) -> float:
    """Output of a network's solved and settled program."""
    return settle(net, solve(net, amount, usd).inputs, amount).amount_out


def timings(repeat: int) -> None:
    """Print routing times for 10 and 100 pools."""
    print("time to route (ms; cold = first call incl. compiling; warm wall and CPU = median of "
          f"{repeat}):")
    cases = [(f"{n:>3} parallel pools", parallel_pools(n)) for n in (10, 100)]
    cases += [(f"{n:>3}-pool simulated market", simulated(n)) for n in (10, 100)]
    for label, ps in cases:
        net = build_network(ps, "WETH", "USDC")
        usd = np.array([ps.token_usd()[t] for t in net.tokens])
        amount = float(ps.depth_usd()[net.pool].sum()) * 0.01 / usd[net.token_in] / 2
        print(f"  {label} ({net.n} pool edges on the route, trade ~1 % of their depth)")
        runs: list[tuple[str, Callable[[], object]]] = [
            ("route()", partial(route, ps, "WETH", "USDC", amount)),
            ("convex program, CLARABEL direct", partial(_solve, solve_conic, net, amount, usd)),
            ("convex program, cvxpy (reference)", partial(_solve, solve_convex, net, amount,
                                                          usd))]
        for name, fn in runs:
            cold, warm, cpu = _median_ms(fn, repeat)
            print(f"      {name:<36} cold {cold:7.2f}  warm {warm:7.3f}  CPU {cpu:7.3f}")
        print(f"      route() method: {route(ps, 'WETH', 'USDC', amount).method}")


def savings(label: str, ps: PoolStates, tin: str, tout: str) -> None:
    """Print routed vs single-best-pool execution cost for trades sized on the pair's depth."""
    pair = ((ps.token0 == tin) & (ps.token1 == tout)) | ((ps.token0 == tout) & (ps.token1 == tin))
    depth = float(ps.depth_usd()[pair].sum())
    usd_in = ps.token_usd()[tin]
    print(f"{label}: {tin} -> {tout}, {int(pair.sum())} direct pool(s), pair depth "
          f"{depth:,.0f} USD")
    print("   trade/depth   trade USD   routed cost   single cost   saved   pools  method")
    for f in FRACTIONS:
        r = route(ps, tin, tout, f * depth / usd_in)
        at_mid = r.amount_in * r.mid_price
        routed = 1 - r.amount_out / at_mid
        single = 1 - r.best_single_pool_out / at_mid
        n_pools = len({p["pool_id"] for p in r.pool_flows})
        print(f"   {f:>10.1%} {f * depth:>11,.0f} {routed:>12.3%} {single:>13.3%} "
              f"{(single - routed) * 1e4:>6.1f}bp {n_pools:>6}  {r.method}")


def main() -> None:
    """Print routing times and the slippage routing saves."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    timings(args.repeat)
    print()
    savings("10 parallel pools", parallel_pools(10), "WETH", "USDC")
    savings("simulated market (100 pools, ethereum)", simulated(100), "WETH", "USDC")
    real = SHARED / "uniswap-v3-daily"
    if real.is_dir():
        from features.sources.importer import import_exports

        panel, _ = import_exports([real], fmt="uniswap-v3-subgraph")
        savings("real daily export (latest day)",
                PoolStates.from_panel(panel.frame, panel.meta), "WETH", "USDT")
    else:
        print(f"real export not found at {real}: skipped")


if __name__ == "__main__":
    main()
