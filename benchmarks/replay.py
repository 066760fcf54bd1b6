"""Replay speed: the ± 200 USDC position over the 50,400 shared minute rows.

Prints the median seconds and rows per second of `replay_position` over several runs (rows
already in memory, as demeter's loop starts from loaded data) and, where zelos-demeter is
importable, demeter's rows per second on the same position in the same process and the ratio
(target: >= 50x). Usage:
    .venv/bin/python benchmarks/replay.py [--runs 7]
    PYTHONPATH=. /work/demeter-venv/bin/python benchmarks/replay.py   # with the demeter ratio
(see benchmarks/demeter_compare.py for that environment).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys as _sys
import time
from pathlib import Path as _Path

# benchmarks/features.py is named like the `features` package: keep this folder off the path
_HERE = _Path(__file__).resolve().parent
_sys.path = [p for p in _sys.path if _Path(p or ".").resolve() != _HERE]

from models.economics.replay import replay_position

TARGET_RATIO = 50.0


def _compare_module():  # type: ignore[no-untyped-def]
    """benchmarks/demeter_compare.py, loaded by path (this folder is off sys.path)."""
    spec = importlib.util.spec_from_file_location("demeter_compare", _HERE / "demeter_compare.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--width", type=float, default=200.0)
    ap.add_argument("--no-demeter", action="store_true")
    args = ap.parse_args()
    dc = _compare_module()
    if not dc.FOLDER.exists():
        raise SystemExit(f"demeter minute files not found at {dc.FOLDER} (set LPA_SHARED_DATA)")
    frame, meta = dc.load_panel()
    replay_position(frame, meta, capital=dc.CAPITAL, width=args.width)  # warm-up
    times, rows = [], 0
    for _ in range(args.runs):
        t = time.perf_counter()
        res = replay_position(frame, meta, capital=dc.CAPITAL, width=args.width,
                              entry_swap_fee=True)
        times.append(time.perf_counter() - t)
        rows = res.rows
    med = statistics.median(times)
    ours = rows / med
    print(f"replay: {rows:,} minute rows, median {med * 1000:.1f} ms over {args.runs} runs "
          f"(min {min(times) * 1000:.1f} ms): {ours:,.0f} rows/s; final NAV "
          f"{res.final_nav:,.2f} USDC")
    if args.no_demeter or not dc.demeter_available():
        print("demeter not importable here: no ratio (see benchmarks/demeter_compare.py)")
        return
    market = dc.load_demeter()
    nav, seconds = dc.run_demeter(market, args.width, "even")
    theirs = len(nav) / seconds
    ratio = ours / theirs
    print(f"demeter: {len(nav):,} rows in {seconds:.1f} s: {theirs:,.0f} rows/s; final NAV "
          f"{float(nav.iloc[-1]):,.2f} USDC")
    print(f"ratio: {ratio:,.0f}x demeter's rows/s (target >= {TARGET_RATIO:.0f}x: "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})")


if __name__ == "__main__":
    main()
