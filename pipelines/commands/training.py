"""`lpa train` and `lpa tune`: walk-forward training with the registry, Optuna tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.choices import Target, TrainChoice, TunableKind
from pipelines.cluster import ClusterOption, SchedulerOption, WorkersOption, check_workers
from pipelines.commands.common import Workdir, console, run, table
from pipelines.config import resolve_workdir

__all__ = ["train_cmd", "tune_cmd"]


def train_cmd(
    workdir: Workdir = None,
    model: Annotated[TrainChoice | None, typer.Option(
        help="Model kind to train; all = baseline, lightgbm and torch (default: the models "
             "of --config, else all).")] = None,
    folds: Annotated[int | None, typer.Option(min=1, help="Walk-forward folds.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config; reads \\[train].")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    register_all: Annotated[bool, typer.Option(
        "--register-all", help="Register every refit model, not only a new champion.")]
    = False,
    threads: Annotated[int | None, typer.Option(
        min=1, help="Threads per model fit (default: env LPA_THREADS, else the CPUs "
                    "available).")] = None,
    alarm_threshold: Annotated[str | None, typer.Option(
        help="P(stress) that counts as an alarm, or auto: each fitted model chooses its own "
             "on its training window (default: --config, else auto).")] = None,
    alarm_share_x: Annotated[float | None, typer.Option(
        help="With auto: rows in alarm aimed at, as a multiple of the training window's "
             "stress base rate (> 0; default: --config, else 2).")] = None,
    cluster: ClusterOption = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
) -> None:
    """Fit, evaluate walk-forward, log to MLflow; register a model that beats the champion."""

    def body() -> None:
        from pipelines.runtime import prefer_passive_waiting

        prefer_passive_waiting()  # before LightGBM and torch load
        from models.names import DEFAULT_KINDS
        from pipelines.config import config_from
        from pipelines.train import TrainConfig, train

        wd = resolve_workdir(workdir)
        models = (None if model is None else list(DEFAULT_KINDS) if model is TrainChoice.all
                  else [model.value])
        cfg = config_from(TrainConfig, config, "train", models=models, n_folds=folds, seed=seed,
                          register_all=register_all or None, threads=threads, workers=workers,
                          alarm_threshold=alarm_threshold, alarm_share_x=alarm_share_x)
        check_workers(cfg.workers, cluster, scheduler)
        from models.gbm_dask import use_dask
        from pipelines.cluster import dask_client

        with dask_client(cluster, scheduler) as client, use_dask(client):
            res = train(wd, cfg, progress=True)  # LightGBM fits train on the cluster if any
        console.print(table("walk-forward evaluation", res.summary_columns(),
                             res.summary_rows()))
        for target, why in res.decisions.items():
            console.print(f"{target}: {why}", markup=False)

    run(body)


def tune_cmd(
    workdir: Workdir = None,
    trials: Annotated[int, typer.Option(min=1, help="Trials to add to the study.")] = 20,
    model: Annotated[TunableKind, typer.Option(help="Model kind to tune.")]
    = TunableKind.lightgbm,
    target: Annotated[Target, typer.Option(help="Target to tune for.")] = Target.fee_yield,
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage URL (default sqlite in the work dir; postgresql://... for workers)",
        envvar="LPA_OPTUNA_STORAGE")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (resumes if it exists).")] = None,
    threads: Annotated[int | None, typer.Option(
        min=1, help="Threads per model fit (default: env LPA_THREADS, else the CPUs "
                    "available).")] = None,
    folds: Annotated[int, typer.Option(min=1, help="Walk-forward folds per trial.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed of the models and the sampler.")] = 0,
    worker: Annotated[int | None, typer.Option(
        min=0, envvar="LPA_WORKER",
        help="This worker's number on a shared study; its sampler's seed is made of "
             "--seed, the worker number (default on a --storage server: the process id) and "
             "the trials already in the study.")] = None,
) -> None:
    """Tune a model's hyper-parameters with Optuna on walk-forward folds."""

    def body() -> None:
        from pipelines.runtime import prefer_passive_waiting

        prefer_passive_waiting()  # before LightGBM and torch load
        from pipelines.tune import tune

        res = tune(resolve_workdir(workdir), model=model.value, target=target.value,
                   trials=trials, storage=storage, study_name=study, progress=True,
                   threads=threads, n_folds=folds, seed=seed, worker=worker)
        console.print(table("tuning", res.summary_columns(), res.summary_rows()))

    run(body)
