"""The training job's fits as tasks a worker process can run on its own (``models.pool``).

A worker reads the stored feature set of the work directory once (keyed by its digest) and
builds the same model inputs, labels and folds as the job's process; a task then names only
what to fit: the (kind, target) pair to evaluate walk-forward, or the refit to register. What
comes back is what the job's process would have computed itself; it logs and registers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.build import FeatureSet, read_features
from features.schema import parse_duration
from models.alarm import AUTO, DEFAULT_ALARM_X, fit_alarm_threshold, fix_threshold
from models.base import BaseForecaster
from models.cv import Fold, walk_forward_splits
from models.evaluate import Evaluation, evaluate, keep_selection
from models.forecasts import TARGETS, align_labels, model_matrix, stress_onsets
from models.gbm_dask import make_forecaster
from models.names import Target

__all__ = ["TrainInputs", "train_inputs", "evaluate_on", "refit_on", "evaluate_kind",
           "refit_kind"]


@dataclass
class TrainInputs:
    """Model inputs, labels per target, stress onsets, purge gap and folds of a feature set."""

    fs: FeatureSet
    X: pd.DataFrame
    labels: dict[str, pd.Series]
    onset: pd.Series | None
    gap: pd.Timedelta
    folds: list[Fold]


_CACHE: dict[tuple[str, str, int, str | None], TrainInputs] = {}


def train_inputs(fs: FeatureSet, n_folds: int, gap: str | None,
                 targets: list[str]) -> TrainInputs:
    """Model inputs, labels, onsets and walk-forward folds (gap None: the label horizon)."""
    X = model_matrix(fs)
    g = parse_duration(gap) if gap else fs.horizon
    folds = walk_forward_splits(X["timestamp"], n_folds, g, fs.horizon)
    labels = {str(t): align_labels(X, fs.labels, TARGETS[Target(t)]) for t in targets}
    return TrainInputs(fs, X, labels, stress_onsets(X, fs.labels), g, folds)


def _inputs(workdir: str, digest: str, n_folds: int, gap: str | None) -> TrainInputs:
    """This worker's inputs of a stored feature set, read once per digest and fold setting."""
    key = (workdir, digest, n_folds, gap)
    if key not in _CACHE:
        fs = read_features(Path(workdir))
        if fs.digest != digest:
            raise RuntimeError(f"the feature table in {workdir} changed during training "
                               f"(digest {fs.digest}, expected {digest}); train again")
        _CACHE.clear()  # one feature set per worker at a time
        _CACHE[key] = train_inputs(fs, n_folds, gap, list(TARGETS))
    return _CACHE[key]


def evaluate_on(d: TrainInputs, kind: str, target: str, *, seed: int, params: dict[str, Any],
                alarm_threshold: float | str, alarm_x: float, reselect_every: int,
                on_fold: Callable[[int, dict[str, float]], None] | None = None) -> Evaluation:
    """Walk-forward evaluation of one (kind, target) on prepared inputs (stress alarms at
    ``alarm_threshold``, or ``"auto"``: each fold's model's own, ``models.alarm``)."""
    fs = d.fs
    return evaluate(lambda: make_forecaster(kind, target, fs.freq, fs.horizon_periods,
                                            seed=seed, **params),
                    d.X, d.labels[str(target)], d.folds, target=target, freq=fs.freq,
                    horizon_periods=fs.horizon_periods, alarm_threshold=alarm_threshold,
                    alarm_x=alarm_x, on_fold=on_fold, onset=d.onset, reselect_every=reselect_every)


def refit_on(d: TrainInputs, kind: str, target: str, *, seed: int, params: dict[str, Any],
             selection: BaseForecaster | None, alarm_threshold: float | str = AUTO,
             alarm_x: float = DEFAULT_ALARM_X) -> BaseForecaster:
    """One (kind, target) refitted on every labelled row, keeping ``selection``'s choice
    when one is given; a stress model carries its alarm threshold (``alarm_threshold_``:
    chosen on these rows when ``"auto"``, else the fixed one)."""
    fs = d.fs
    model = make_forecaster(kind, target, fs.freq, fs.horizon_periods, seed=seed, **params)
    if selection is not None:
        model = keep_selection(model, selection)
    y = d.labels[str(target)]
    model.fit(d.X, y)
    if Target(target) is Target.stress:
        if alarm_threshold == AUTO:
            fit_alarm_threshold(model, d.X, y, alarm_x)
        else:
            fix_threshold(model, float(alarm_threshold))
    return model


def evaluate_kind(item: tuple[str, str], *, workdir: str, digest: str, n_folds: int,
                  gap: str | None, seed: int, params: dict[str, Any],
                  alarm_threshold: float | str, alarm_x: float, reselect_every: int
                  ) -> Evaluation:
    """:func:`evaluate_on` the work directory's feature set (a worker task)."""
    kind, target = item
    return evaluate_on(_inputs(workdir, digest, n_folds, gap), kind, target, seed=seed,
                       params=params, alarm_threshold=alarm_threshold, alarm_x=alarm_x,
                       reselect_every=reselect_every)


def refit_kind(item: tuple[str, str], *, workdir: str, digest: str, n_folds: int,
               gap: str | None, seed: int, params: dict[str, Any],
               selection: BaseForecaster | None, alarm_threshold: float | str = AUTO,
               alarm_x: float = DEFAULT_ALARM_X) -> BaseForecaster:
    """:func:`refit_on` the work directory's feature set (a worker task)."""
    kind, target = item
    return refit_on(_inputs(workdir, digest, n_folds, gap), kind, target, seed=seed,
                    params=params, selection=selection, alarm_threshold=alarm_threshold,
                    alarm_x=alarm_x)
