"""The main job end to end: data -> features -> train -> champion -> backtest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

__all__ = ["run_demo", "DEMO_SETTINGS"]

# where the demo is lighter than the defaults of `lpa train` / `lpa backtest` (printed when it
# runs); every choice stays walk-forward and made on earlier rows only
DEMO_SETTINGS: dict[str, str] = {
    "backtest retrain": "28d",  # models refit every 28 days (hourly default 7 d)
    "backtest reselect_every": "8",  # only the first refit selects (and the next while the
    # first had too few rows to calibrate), the later ones keep its choice (default: every 4th)
    "train reselect_every": "3",  # the first of 3 folds selects, the later ones keep its choice
}


def run_demo(
    workdir: Path,
    console: Console,
    *,
    data: Path | None = None,
    fmt: str = "uniswap-v3-subgraph",
    pools: int = 30,
    days: int = 180,
    seed: int = 0,
    models: list[str] | None = None,
    folds: int = 3,
    threads: int | None = None,
    workers: int | None = None,
) -> Any:
    """Run the whole chain in a work directory and return the backtest result.

    With ``workers`` processes (default: one per CPU available; 1: none), the backtest runs in
    one of them from the start (it needs nothing the training makes) while the training's
    (kind, target) evaluations and refits run in the others and in the time it leaves."""
    from pipelines.runtime import prefer_passive_waiting, quiet_mlflow

    prefer_passive_waiting()  # before LightGBM and torch load
    with quiet_mlflow():
        return _run(workdir, console, data=data, fmt=fmt, pools=pools, days=days, seed=seed,
                    models=models, folds=folds, threads=threads, workers=workers)


def _run(workdir: Path, console: Console, *, data: Path | None, fmt: str, pools: int,
         days: int, seed: int, models: list[str] | None, folds: int,
         threads: int | None, workers: int | None) -> Any:
    from features.build import FeatureConfig, build_features, feature_columns, write_features
    from features.sources.store import write_panel
    from models.names import DEFAULT_KINDS, ModelKind
    from models.pool import pool_workers, task_pool, use_pool

    kinds = [ModelKind(m) for m in models] if models else list(DEFAULT_KINDS)
    t0 = time.perf_counter()

    def stage(name: str) -> None:
        console.rule(f"[bold]{name}[/bold] (at {time.perf_counter() - t0:.0f} s)")

    stage("1/4 pool data")
    if data is None:
        from features.sources.simulator import simulate_market

        with console.status(f"simulating {pools} pools x {days} days (seed {seed})"):
            panel, truth = simulate_market(n_pools=pools, days=days, seed=seed, freq="1h")
        write_panel(panel, workdir, truth=truth, extra={"seed": seed})
    else:
        from features.sources.importer import import_exports

        panel, report = import_exports([Path(data)], fmt)
        for rule, _what, n in report.rows():
            if n:
                console.print(f"  cleaning rule {rule}: {n} row(s)")
        write_panel(panel, workdir, extra={"cleaning": report.to_dict()})
    console.print(f"{len(panel.meta)} pools, {len(panel.frame):,} rows at {panel.freq}")

    stage("2/4 features and labels")
    fs = build_features(panel, FeatureConfig(), progress=True)
    write_features(fs, workdir)
    console.print(f"{len(feature_columns(fs.features))} features, horizon {fs.horizon}")

    n_workers = pool_workers(workers)
    with task_pool(n_workers) as pool, use_pool(pool):
        return _fit_and_backtest(workdir, console, stage, t0, panel, fs, kinds, seed=seed,
                                 folds=folds, threads=threads, workers=n_workers)


def _fit_and_backtest(workdir: Path, console: Console, stage: Any, t0: float, panel: Any,
                      fs: Any, kinds: list[Any], *, seed: int, folds: int,
                      threads: int | None, workers: int) -> Any:
    """Stages 3 and 4: train and register, then the walk-forward backtest."""
    from features.sources.store import read_truth
    from models.names import ModelKind
    from models.pool import active_pool
    from models.threads import use_threads
    from pipelines.backtest.engine import BacktestConfig, run_backtest
    from pipelines.tables import table
    from pipelines.train import TrainConfig, train

    best = ModelKind.lightgbm if ModelKind.lightgbm in kinds else kinds[0]
    # each backtest refit is still purged walk-forward; its later refits and the training's
    # later folds keep the choice made on inner folds by the first ones (DEMO_SETTINGS)
    bcfg = BacktestConfig.model_validate({
        "model": str(best), "seed": seed, "retrain": DEMO_SETTINGS["backtest retrain"],
        "reselect_every": int(DEMO_SETTINGS["backtest reselect_every"])})
    tcfg = TrainConfig(models=kinds, n_folds=folds, seed=seed, threads=threads,
                       reselect_every=int(DEMO_SETTINGS["train reselect_every"]))
    pool = active_pool()
    # the backtest needs nothing the training makes: with workers, it runs in one of them
    # from the start while the training's fits take the others and the time it leaves
    side = None if pool is None else pool.submit(backtest_task, str(workdir), bcfg)
    side_done: list[float] = []
    if side is not None:
        side.add_done_callback(lambda _: side_done.append(time.perf_counter() - t0))
    stage("3/4 train, evaluate walk-forward, register champions"
          + (f" ({workers} worker processes; the backtest runs in one of them)"
             if side is not None else ""))
    console.print("lighter than the defaults, to keep the demo short: "
                  + ", ".join(f"{k} {v}" for k, v in DEMO_SETTINGS.items()))
    tres = train(workdir, tcfg, progress=True)
    console.print(table("walk-forward evaluation", tres.summary_columns(), tres.summary_rows()))
    for target, why in tres.decisions.items():
        console.print(f"  {target}: {why}")

    stage("4/4 walk-forward backtest")
    if side is not None:
        with console.status("waiting for the backtest's worker"):
            bres = side.result()
        console.print(f"the backtest's worker finished at {side_done[0]:.0f} s"
                      if side_done else "the backtest's worker finished")
    else:
        with use_threads(threads):
            bres = run_backtest(panel, fs, bcfg, workdir=workdir,
                                truth=read_truth(workdir), progress=True)
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return bres


def backtest_task(workdir: str, config: Any) -> Any:
    """The demo's backtest on a work directory's stored panel and features (a worker task)."""
    from features.build import read_features
    from features.sources.store import read_panel, read_truth
    from pipelines.backtest.engine import run_backtest
    from pipelines.runtime import quiet_mlflow

    wd = Path(workdir)
    with quiet_mlflow():
        return run_backtest(read_panel(wd), read_features(wd), config, workdir=wd,
                            truth=read_truth(wd))
