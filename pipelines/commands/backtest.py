"""`lpa backtest` and `lpa demo`: the walk-forward backtest, alone or end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from pipelines.cluster import ClusterOption, SchedulerOption, WorkersOption, check_workers
from pipelines.commands.common import Workdir, console, print_metrics, run
from pipelines.config import resolve_workdir

__all__ = ["backtest_cmd", "demo_cmd", "print_routing_savings", "print_oracle_bounds"]


def backtest_cmd(
    workdir: Workdir = None,
    model: Annotated[str | None, typer.Option(help="baseline | lightgbm | torch")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config; reads \\[backtest].")] = None,
    capital: Annotated[float | None, typer.Option(help="Starting capital, USD.")] = None,
    cluster: ClusterOption = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
) -> None:
    """Walk-forward backtest of the allocator against baselines and the hindsight oracle."""

    def body() -> None:
        from pipelines.runtime import prefer_passive_waiting

        prefer_passive_waiting()  # before anything imports LightGBM or torch
        from features.build import read_features
        from features.sources.store import read_panel, read_truth
        from models.gbm_dask import use_dask
        from models.pool import task_pool, use_pool
        from pipelines.backtest.engine import BacktestConfig, run_backtest
        from pipelines.cluster import dask_client
        from pipelines.config import config_from

        wd = resolve_workdir(workdir)
        cfg = config_from(BacktestConfig, config, "backtest", model=model, capital_usd=capital)
        check_workers(workers, cluster, scheduler)
        with dask_client(cluster, scheduler) as client, use_dask(client), \
                task_pool(workers or 1) as pool, use_pool(pool):
            res = run_backtest(read_panel(wd), read_features(wd), cfg, workdir=wd,
                               truth=read_truth(wd), progress=True)
        print_metrics(res.metrics)
        print_routing_savings(res.routing_savings())
        print_oracle_bounds(res.metrics)
        for w in res.warnings:
            console.print(f"warning: {w}", markup=False)
        console.print(f"report: {res.report_dir}")

    run(body)


def print_routing_savings(savings: pd.DataFrame) -> None:
    """One line per strategy: the rebalancing swaps' cost routed against single-pool, USD."""
    if savings.empty:
        return
    console.print("rebalancing swaps, routed over each pair's pools vs through each pool alone:")
    for name, r in savings.iterrows():
        share = "" if pd.isna(r["saved_share"]) else f" ({r['saved_share']:.1%})"
        console.print(f"  {name}: ${r['routed_usd']:,.0f} routed vs "
                      f"${r['single_pool_usd']:,.0f} single-pool, saved "
                      f"${r['saved_usd']:,.0f}{share}", markup=False)


def print_oracle_bounds(metrics: dict[str, dict[str, float]]) -> None:
    """Each hindsight plan's bound beside what the ledger booked executing it."""
    for name, metric in (("oracle", "net_return"), ("oracle_lp_alpha", "lp_alpha")):
        m = metrics.get(name, {})
        rivals = [v[metric] for k, v in metrics.items() if not k.startswith("oracle")]
        if "plan_bound" in m and rivals:
            console.print(f"hindsight bound: {name} {metric} <= {m['plan_bound']:.4g} "
                          f"(executed {m[metric]:.4g}; best strategy {max(rivals):.4g})",
                          markup=False)


def demo_cmd(
    workdir: Workdir = None,
    data: Annotated[Path | None, typer.Option(help="Run on real exports instead.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Format of --data.")]
    = "uniswap-v3-subgraph",
    pools: Annotated[int, typer.Option(help="Simulated pools.")] = 30,
    days: Annotated[int, typer.Option(help="Simulated days.")] = 180,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    models: Annotated[str, typer.Option(
        help="Comma-separated model kinds to train: baseline, seasonal_naive, lightgbm, "
             "torch.")] = "baseline,lightgbm,torch",
    threads: Annotated[int | None, typer.Option(
        min=1, help="Threads per model fit (default: env LPA_THREADS, else the CPUs "
                    "available).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", envvar="LPA_WORKERS", min=1,
        help="Worker processes that fit models side by side (default: one per CPU "
             "available; 1: every fit in this process).")] = None,
) -> None:
    """Run data -> features -> train -> register -> backtest end to end and print the table."""

    def body() -> None:
        from models.names import ModelKind
        from pipelines.demo import run_demo

        kinds = [m.strip() for m in models.split(",") if m.strip()]
        bad = [m for m in kinds if m not in set(ModelKind)]
        if bad:
            raise ValueError(f"--models: unknown kind(s) {bad}; expected some of "
                             f"{[k.value for k in ModelKind]}")
        wd = resolve_workdir(workdir)
        res = run_demo(wd, console, data=data, fmt=fmt, pools=pools, days=days, seed=seed,
                       models=kinds, threads=threads, workers=workers)
        print_metrics(res.metrics)
        print_routing_savings(res.routing_savings())
        print_oracle_bounds(res.metrics)
        for w in res.warnings:
            console.print(f"warning: {w}", markup=False)
        console.print(f"report: {res.report_dir}")
        console.print(f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{wd / 'mlflow.db'}")
        console.print(f"service:   lpa serve --workdir {wd}")

    run(body)
