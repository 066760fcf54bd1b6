"""Benchmark: the feature build of a stored hourly panel as the pool count grows.

For each size the script simulates an hourly market and stores its panel in a temporary work
directory (in its own interpreter: the simulator holds the whole market), then times what
`lpa features build` does (read the stored panel, build, write the feature store) in up to
three ways, each run in a fresh interpreter so its peak memory is its own, into a work
directory whose previous feature store is deleted first (timed apart: replacing a store costs
that much more):

- ``single``: one table in memory (``build_features`` + ``write_features``); skipped when its
  peak memory, estimated from the last single run (or ``SINGLE_GIB_PER_MILLION``), would not
  fit in the memory available;
- ``partitioned``: in this process, partition by partition (``lpa features build
  --partitions``), against the targets of 60 s and 4 GiB;
- ``cluster``: a Dask LocalCluster (``--cluster local:N``).

Each measurement is repeated ``--repeat`` times; the table shows medians and, beside the
seconds, the machine's load average over the runs (other jobs share its cores).

    python benchmarks/scale.py                                   # 200x365 and 1000x730 days
    python benchmarks/scale.py --sizes 50x730,200x730 --modes single,cluster --repeat 1
    python benchmarks/scale.py --panels /tmp/lpa-panels   # keep the panels for the next run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# this folder holds a script named like the `features` package: keep it off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

GIB = 2**30
MODES = ("single", "partitioned", "cluster")
TARGET_SIZE = (1000, 730)  # pools x days whose partitioned build has targets:
TARGET_SECONDS = 60.0
TARGET_GIB = 4.0


def _peak_rss() -> int:
    """Peak resident memory of this process, bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _measure(mode: str, workdir: Path, workers: int) -> dict[str, float]:
    """One build of the stored panel: in one table, in partitions, or on a LocalCluster."""
    from features.build import build_features, write_features
    from features.distributed import build_features_distributed
    from features.partitioned import build_features_partitioned
    from features.sources.store import read_panel
    from pipelines.cluster import dask_client

    out: dict[str, float] = {}
    cpu0 = time.process_time()
    if mode == "single":
        t0 = time.perf_counter()
        fs = build_features(read_panel(workdir))
        write_features(fs, workdir)
        out["seconds"] = time.perf_counter() - t0
        out["rows"] = float(len(fs.features))
    elif mode == "partitioned":
        t0 = time.perf_counter()
        res = build_features_partitioned(workdir)
        out["seconds"] = time.perf_counter() - t0
        out["rows"], out["parts"] = float(res.rows), float(res.parts)
    else:
        t0 = time.perf_counter()
        with dask_client(f"local:{workers}") as client:
            out["startup_seconds"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            done = build_features_distributed(client, workdir)
            out["seconds"] = time.perf_counter() - t1
            out["rows"], out["parts"] = float(done.rows), float(done.parts)
            peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            out["worker_peak_gib"] = max(peaks.values()) * 1024 / GIB
    out["cpu_seconds"] = time.process_time() - cpu0  # this process's threads, not workers
    out["peak_gib"] = _peak_rss() / GIB
    return out


def measure_in_child(mode: str, workdir: Path, workers: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and read its JSON line.

    The feature store of the previous run is deleted first and that time kept apart
    (``delete_seconds``): a build that replaces a store also deletes the old one.
    """
    t0 = time.perf_counter()
    shutil.rmtree(workdir / "features", ignore_errors=True)
    deleted = time.perf_counter() - t0
    cmd = [sys.executable, __file__, "--measure", mode, "--workdir", str(workdir),
           "--workers", str(workers)]
    load0 = os.getloadavg()[0]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines()
        return {"error": True, "returncode": run.returncode, "message": lines[-1] if lines else ""}
    out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    out["load"] = (load0 + os.getloadavg()[0]) / 2
    out["delete_seconds"] = deleted
    return out


def _market(pools: int, days: int) -> Any:
    """A simulated hourly panel of exactly ``pools`` pools (further deployments past the
    simulator's distinct pools carry ids suffixed ``#k``)."""
    from features.sources.simulator import simulate_market

    panel, _ = simulate_market(n_pools=pools, days=days, seed=0)
    if len(panel.meta) != pools:
        raise RuntimeError(f"the simulator made {len(panel.meta)} pools, {pools} asked")
    return panel


def _simulate_here(pools: int, days: int, workdir: Path) -> list[float]:
    """Simulate and store a panel; seconds and rows."""
    from features.sources.store import write_panel

    t0 = time.perf_counter()
    panel = _market(pools, days)
    write_panel(panel, workdir)
    return [time.perf_counter() - t0, float(len(panel.frame))]


def simulate_stored(pools: int, days: int, workdir: Path) -> tuple[float, int]:
    """Simulate and store a panel in a fresh interpreter; seconds and rows."""
    run = subprocess.run([sys.executable, __file__, "--simulate", str(pools), "--days",
                          str(days), "--workdir", str(workdir)],
                         capture_output=True, text=True, check=True)
    secs, rows = json.loads(run.stdout.strip().splitlines()[-1])
    return float(secs), int(rows)


def _row(pools: int, days: int, rows: int, mode: str, runs: list[dict[str, Any]]) -> str:
    """One line of the table: medians over the runs, targets for the partitioned build."""
    sec = statistics.median(r["seconds"] for r in runs)
    peak = statistics.median(r["peak_gib"] for r in runs)
    cpu = statistics.median(r["cpu_seconds"] for r in runs)
    spread = (f"{min(r['seconds'] for r in runs):.1f}-{max(r['seconds'] for r in runs):.1f}"
              if len(runs) > 1 else "")
    note = f"load {statistics.mean(r['load'] for r in runs):.1f}, cpu {cpu:.0f} s"
    if len(runs) > 1:  # later runs delete a store their mode wrote
        deleted = statistics.median(r["delete_seconds"] for r in runs[1:])
        note += f", old store deleted in {deleted:.1f} s"
    if mode == "partitioned":
        note += f", {int(runs[0]['parts'])} parts"
        if (pools, days) == TARGET_SIZE:
            met = ("met" if sec < TARGET_SECONDS else "NOT met", "met" if peak < TARGET_GIB
                   else "NOT met")
            note += (f"; targets < {TARGET_SECONDS:.0f} s {met[0]}, < {TARGET_GIB:.0f} GiB "
                     f"{met[1]}")
    if mode == "cluster":
        peak_s = f"{peak:.2f} + {statistics.median(r['worker_peak_gib'] for r in runs):.2f}/wk"
        note += f", {int(runs[0]['parts'])} parts"
    else:
        peak_s = f"{peak:.2f}"
    return (f"{pools:>6} {days:>5} {rows:>11,} {mode:>12} {sec:>8.1f} {spread:>11} "
            f"{rows / sec:>12,.0f} {peak_s:>16}  {note}")


def main() -> None:
    """Print build seconds, pool-hours per second and peak memory per size and mode."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200x365,1000x730",
                    help="comma-separated POOLSxDAYS hourly panels")
    ap.add_argument("--modes", default="single,partitioned",
                    help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--panels", type=Path, help="keep the stored panels in this folder "
                    "(POOLSxDAYS/) and reuse them on later runs")
    ap.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--simulate", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--days", type=int, default=730, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure, args.workdir, args.workers)))
        return
    if args.simulate:
        print(json.dumps(_simulate_here(args.simulate, args.days, args.workdir)))
        return
    from features.partitioned import SINGLE_GIB_PER_MILLION, available_gib

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SystemExit(f"--modes: unknown {bad}; expected some of {', '.join(MODES)}")
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    except ValueError:
        raise SystemExit(f"--sizes: expected POOLSxDAYS,..., e.g. 200x365; got "
                         f"{args.sizes!r}") from None
    print(f"hourly panels; {os.cpu_count()} CPUs, {available_gib():.1f} GiB available; "
          f"medians of {args.repeat} run(s), each in a fresh interpreter; load = the machine's "
          f"1-minute load average (other jobs included); cluster = {args.workers} workers")
    print(f"{'pools':>6} {'days':>5} {'pool-hours':>11} {'mode':>12} {'seconds':>8} "
          f"{'range':>11} {'pool-hours/s':>12} {'peak GiB':>16}  note")
    gib_per_row = SINGLE_GIB_PER_MILLION / 1e6
    for pools, days in sizes:
        if args.panels is not None:
            root = args.panels / f"{pools}x{days}"
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix=f"lpa-scale-{pools}x{days}-"))
        try:
            manifest = root / "data" / "panel" / "manifest.json"
            if args.panels is not None and manifest.exists():
                rows = int(json.loads(manifest.read_text())["rows"])
                print(f"{pools:>6} {days:>5} {rows:>11,} (stored panel of {root})", flush=True)
            else:
                sim_s, rows = simulate_stored(pools, days, root)
                print(f"{pools:>6} {days:>5} {rows:>11,} (simulated and stored in "
                      f"{sim_s:.0f} s)", flush=True)
            for mode in modes:
                avail = available_gib()
                if mode == "single" and gib_per_row * rows > 0.8 * avail:
                    print(f"{pools:>6} {days:>5} {rows:>11,} {mode:>12} {'skipped':>8}  "
                          f"{gib_per_row * rows:.1f} GiB estimated: more than 80% of the "
                          f"{avail:.1f} GiB available", flush=True)
                    continue
                runs = [measure_in_child(mode, root, args.workers) for _ in range(args.repeat)]
                failed = [r for r in runs if "error" in r]
                if failed:
                    print(f"{pools:>6} {days:>5} {rows:>11,} {mode:>12} {'failed':>8}  exit "
                          f"{failed[0]['returncode']}: {failed[0]['message']}", flush=True)
                    continue
                print(_row(pools, days, rows, mode, runs), flush=True)
                if mode == "single":
                    gib_per_row = statistics.median(r["peak_gib"] for r in runs) / rows
        finally:
            if args.panels is None:
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
