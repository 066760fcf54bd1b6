"""Hyper-parameter tuning with Optuna on walk-forward folds; trials are nested MLflow runs.

The last fold-sized tail of history is the final holdout: it is cut off before the folds are
made, so no trial ever scores on it. Inputs and labels are aligned by (pool_id, timestamp)
before any row is dropped, so every training row keeps its own label.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
from rich.progress import Progress

from features.build import read_features
from features.schema import TIMESTAMP
from models.cv import walk_forward_splits
from models.evaluate import evaluate
from models.forecasts import inputs_and_labels, make_forecaster
from models.names import ModelKind, Target, score_of
from models.threads import use_threads
from pipelines.config import configure_mlflow
from pipelines.runtime import quiet_mlflow

__all__ = ["SPACES", "space_lightgbm", "space_torch", "tune", "TuneResult", "default_storage",
           "storage_url", "sampler_seed", "open_storage"]


def space_lightgbm(trial: optuna.Trial) -> dict[str, Any]:
    """LightGBM search space."""
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 300, step=50),
        "params": {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 63),
            "min_child_samples": trial.suggest_int("min_child_samples", 20, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        },
    }


def space_torch(trial: optuna.Trial) -> dict[str, Any]:
    """GRU search space."""
    return {
        "hidden": trial.suggest_categorical("hidden", [16, 32, 64]),
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "epochs": trial.suggest_int("epochs", 2, 8),
    }


SPACES = {ModelKind.lightgbm: space_lightgbm, ModelKind.torch: space_torch}


@dataclass
class TuneResult:
    """Outcome of a tuning session."""

    study_name: str
    storage: str
    n_trials: int
    best_value: float
    best_params: dict[str, Any]
    holdout_start: str

    def summary_columns(self) -> list[str]:
        """Column names of the summary table."""
        return ["study", "trials in storage", "best score", "best params", "holdout from"]

    def summary_rows(self) -> list[list[Any]]:
        """Rows of the summary table."""
        return [[self.study_name, self.n_trials, self.best_value, self.best_params,
                 self.holdout_start]]


def default_storage(workdir: Path) -> str:
    """sqlite Optuna storage inside the work directory."""
    return f"sqlite:///{Path(workdir).resolve() / 'optuna.db'}"


def storage_url(url: str) -> str:
    """An Optuna storage URL with PostgreSQL's driver spelled out.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://`` (psycopg 3, the
    ``postgres`` extra): SQLAlchemy's bare scheme means psycopg2, which is not installed. A URL
    that names its driver (``postgresql+psycopg2://``) is kept.
    """
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare):]
    return url


def sampler_seed(seed: int, worker: int | None, shared: bool, existing: int = 0) -> int:
    """The TPE sampler's seed of one tuning process, distinct per worker and per resume.

    Parameters
    ----------
    seed : the run's seed
    worker : this worker's number on a shared study, or None
    shared : the storage may be shared (a server URL): without a worker number the process
        id tells workers apart; a lone process on the work directory's sqlite file is worker 0
    existing : trials already in the study, so that a resumed study draws new candidates
    """
    key = worker if worker is not None else os.getpid() if shared else 0
    return int(np.random.SeedSequence([seed, key, existing]).generate_state(1)[0])


def _rdb(url: str) -> optuna.storages.RDBStorage:
    """A database storage; servers send a heartbeat so a dead worker's trials become FAIL."""
    server = not url.startswith("sqlite")
    try:
        with warnings.catch_warnings():  # the heartbeat is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=60 if server else None,
                                              grace_period=180 if server else None)
    except ImportError:  # Optuna's "Failed to import DB access module"
        scheme = url.split(":", 1)[0]
        where = f"{scheme}://{url.split('@')[-1]}" if "@" in url else url
        raise RuntimeError(f"Optuna storage {where}: the database "
                           f"driver of {scheme!r} is not installed; for PostgreSQL install the "
                           "postgres extra (pip install -e '.[postgres]', psycopg 3) and use "
                           "postgresql:// or postgresql+psycopg://") from None


def open_storage(url: str, attempts: int = 5) -> Any:
    """Optuna storage for a URL; database storages retry their first connection.

    Workers that start together race to create the schema of an empty database; the loser
    retries once the winner has made it.
    """
    if not url.startswith(("postgresql", "mysql", "sqlite")):
        return url  # journal or in-memory storages: Optuna opens them itself
    for attempt in range(attempts - 1):
        try:
            return _rdb(url)
        except RuntimeError:
            raise
        except Exception:  # noqa: BLE001 - a concurrent schema creation: retried
            time.sleep(0.5 * (attempt + 1))
    return _rdb(url)


def _trials_in(storage: Any, name: str) -> int:
    """Trials a study already holds (0 when it does not exist yet)."""
    try:
        return len(optuna.load_study(study_name=name, storage=storage).trials)
    except KeyError:
        return 0


def tune(
    workdir: Path, model: str = "lightgbm", target: str = "fee_yield", trials: int = 20,
    storage: str | None = None, study_name: str | None = None, progress: bool = True,
    n_folds: int = 3, seed: int = 0, threads: int | None = None, alarm_threshold: float = 0.5,
    worker: int | None = None,
) -> TuneResult:
    """Add ``trials`` trials to a (resumable) study scoring walk-forward folds only.

    Several processes may run this on one study in a shared storage (PostgreSQL); each draws
    candidates with its own sampler seed (:func:`sampler_seed`, also new on each resume) and
    tags its trials with ``worker`` (else its pid).
    """
    if model not in SPACES:
        raise ValueError(f"no search space for model {model!r}; expected one of "
                         f"{[str(k) for k in SPACES]}")
    target = Target(target)
    fs = read_features(workdir)
    X, y = inputs_and_labels(fs, target)
    ts = X[TIMESTAMP]
    # hold out the final tail (one fold's length) from tuning altogether
    span = ts.max() - ts.min()
    holdout_start = ts.max() - span / (n_folds + 3)
    inner = (ts <= holdout_start - fs.horizon).to_numpy()
    Xi, yi = X[inner], y[inner]  # one index: rows keep their labels
    folds = walk_forward_splits(Xi[TIMESTAMP], n_folds, fs.horizon, fs.horizon)
    shared = storage is not None and storage != default_storage(workdir)
    storage = storage_url(storage or default_storage(workdir))
    who = str(worker) if worker is not None else f"pid-{os.getpid()}"
    name = study_name or f"{model}-{target}"
    space = SPACES[ModelKind(model)]

    def objective(trial: optuna.Trial) -> float:
        params = space(trial)
        trial.set_user_attr("worker", who)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params({"trial": trial.number, "worker": who, **trial.params})

            def on_fold(i: int, m: dict[str, float]) -> None:
                s = score_of(m, target)
                trial.report(s, i)
                mlflow.log_metric("fold_score", s, step=i)
                if trial.should_prune():
                    mlflow.set_tag("pruned", "true")
                    raise optuna.TrialPruned()

            ev = evaluate(lambda: make_forecaster(model, target, fs.freq, fs.horizon_periods,
                                                  seed=seed, **params),
                          Xi, yi, folds, target=target, freq=fs.freq,
                          horizon_periods=fs.horizon_periods, alarm_threshold=alarm_threshold,
                          on_fold=on_fold)
            score = score_of(ev.metrics, target)
            mlflow.log_metrics({k: v for k, v in ev.metrics.items() if math.isfinite(v)})
            mlflow.log_metric("score", score)
            return score

    with quiet_mlflow(), use_threads(threads):
        store = open_storage(storage)
        sseed = sampler_seed(seed, worker, shared, _trials_in(store, name))
        study = optuna.create_study(
            study_name=name, storage=store, load_if_exists=True,
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=sseed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        )
        configure_mlflow(workdir, "lpa-tune")
        with mlflow.start_run(run_name=f"tune-{name}") as parent, Progress(
                disable=not progress) as bar:
            mlflow.log_params({"study": name, "storage": storage.split("@")[-1],
                               "model": str(model), "target": str(target),
                               "holdout_start": str(holdout_start), "worker": who,
                               "sampler_seed": sseed})
            task = bar.add_task(f"tuning {name}", total=trials)
            study.optimize(objective, n_trials=trials,
                           callbacks=[lambda s, t: bar.advance(task)])
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if done:
                mlflow.log_metric("best_score", study.best_value)
                mlflow.log_dict(study.best_params, "best_params.json")
            mlflow.set_tag("parent", parent.info.run_id)
    return TuneResult(study_name=name, storage=storage, n_trials=len(study.trials),
                      best_value=study.best_value if done else math.nan,
                      best_params=study.best_params if done else {},
                      holdout_start=str(holdout_start))
