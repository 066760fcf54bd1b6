"""Walk-forward evaluation of a forecaster on inputs and labels aligned on one index.

Each fold fits a fresh model on the rows up to its cutoff and forecasts its test block; every
prediction row carries the ``cutoff`` it was made at (as mlforecast's cross-validation does).
Metrics are computed per fold and over all test rows. With a Dask client active
(``models.gbm_dask.use_dask``) the folds run as tasks on the cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.schema import FREQUENCIES, POOL_ID, TIMESTAMP
from models.alarm import (
    AUTO,
    DEFAULT_ALARM_X,
    THRESHOLD_COLUMN,
    fit_alarm_threshold,
    resolve_thresholds,
)
from models.base import PROB_COLUMN, QUANTILE_COLUMNS, QUANTILES, BaseForecaster, ForecastError
from models.cv import Fold
from models.events import event_scores
from models.forecasts import seasonal_naive
from models.gbm_dask import active_client, fan_out, use_dask, worker_threads
from models.metrics import coverage, mase, mase_scale, pinball_loss, stress_scores
from models.names import MEAN_COLUMN, Target
from models.threads import use_threads

__all__ = ["Evaluation", "evaluate", "score_predictions", "keep_selection", "CUTOFF", "FOLD",
           "ACTUAL", "MASE_SCALE", "ONSET"]

CUTOFF, FOLD, ACTUAL, ONSET = "cutoff", "fold", "y", "onset"
MASE_SCALE = "mase_scale"  # in-sample seasonal-naive MAE of the row's pool, fold's training rows


@dataclass
class Evaluation:
    """Out-of-sample forecasts and their scores.

    Attributes
    ----------
    predictions : one row per test row, on X's index: pool_id, timestamp, cutoff (last
        training timestamp), fold, y (the label), the forecast columns (q10/q50/q90/mean or
        p_stress), for quantile targets mase_scale, for stress the onset offsets if given
        and the alarm_threshold the row is scored at
    folds : one row per fold: fold, cutoff, test_start, test_end, train_rows, test_rows and
        the fold's metrics
    metrics : the metrics over every test row
    model : the last fold's fitted model (for importances and plots)
    selection : the latest fold that selected on inner folds (its choice and calibration can
        be kept by a refit on later rows, ``keep_selection``)
    """

    predictions: pd.DataFrame
    folds: pd.DataFrame
    metrics: dict[str, float]
    model: BaseForecaster
    selection: BaseForecaster | None = None


def score_predictions(
    target: str, predictions: pd.DataFrame, horizon_periods: int,
    alarm_threshold: float | str = 0.5, freq: str = "1h",
) -> dict[str, float]:
    """Metrics of forecasts against the labels in their ``y`` column.

    Quantile targets: MASE of the median (each error over its row's ``mase_scale``, the
    in-sample seasonal-naive MAE of its pool in the fold's training window) and of the mean,
    mean pinball loss over q10/q50/q90 (target units) and the share of labels inside q10-q90
    (coverage_80). Stress: AUC, PR-AUC, Brier score, base rate, and the event-level scores of
    alarms at ``alarm_threshold`` (``models.events.event_scores``: events, event_recall,
    median_lead_periods, false_alarms_per_pool_year, alarm_share) with the threshold itself
    (alarm_threshold). ``"auto"``: each row's ``alarm_threshold`` column, the threshold its
    fold's model chose on its training window; the reported threshold is the mean over folds.
    """
    y = predictions[ACTUAL].to_numpy(float)
    if Target(target) is Target.stress:
        p = predictions[PROB_COLUMN].to_numpy(float)
        out = stress_scores(y, p)
        thr = resolve_thresholds(predictions, alarm_threshold)
        out.update(event_scores(predictions, p, thr, horizon_periods, FREQUENCIES[freq],
                                label=ACTUAL, onset=ONSET if ONSET in predictions else None))
        out["alarm_threshold"] = _mean_over_folds(predictions, thr)
        return out
    ok = np.isfinite(y)
    q = {c: predictions[c].to_numpy(float)[ok] for c in QUANTILE_COLUMNS}
    scale = predictions[MASE_SCALE].to_numpy(float)[ok]
    mean = predictions[MEAN_COLUMN].to_numpy(float)[ok] if MEAN_COLUMN in predictions \
        else q["q50"]
    return {
        "mase": mase(y[ok], q["q50"], scale=scale),
        "mase_mean": mase(y[ok], mean, scale=scale),
        "pinball": float(np.mean([pinball_loss(y[ok], q[c], a)
                                  for c, a in zip(QUANTILE_COLUMNS, QUANTILES, strict=True)])),
        "coverage_80": coverage(y[ok], q["q10"], q["q90"]),
    }


def _mean_over_folds(predictions: pd.DataFrame, thr: np.ndarray) -> float:
    """Mean of the per-fold thresholds (NaN ones, chosen on no labelled row, left out)."""
    by = predictions[FOLD].to_numpy() if FOLD in predictions else np.zeros(len(thr))
    per = pd.Series(thr).groupby(by).first().to_numpy(float)
    per = per[np.isfinite(per)]
    return float(per.mean()) if len(per) else float("nan")


def _mase_scale(target: str, X_train: pd.DataFrame, y_train: pd.Series, X_test: pd.DataFrame,
                freq: str, horizon_periods: int) -> np.ndarray:
    """Per test row: its pool's in-sample seasonal-naive MAE on the training rows."""
    naive = seasonal_naive(X_train, target, freq, horizon_periods)
    return np.broadcast_to(mase_scale(
        y_train.to_numpy(float), naive, groups_train=X_train[POOL_ID].to_numpy(),
        groups=X_test[POOL_ID].to_numpy()), (len(X_test),))


def evaluate(
    make_model: Callable[[], BaseForecaster], X: pd.DataFrame, y: pd.Series, folds: list[Fold],
    *, target: str, freq: str, horizon_periods: int, alarm_threshold: float | str = 0.5,
    alarm_x: float = DEFAULT_ALARM_X,
    on_fold: Callable[[int, dict[str, float]], None] | None = None,
    onset: pd.Series | None = None, reselect_every: int = 1,
) -> Evaluation:
    """Fit a fresh model per fold on aligned X and y, forecast each test block and score it.

    Parameters
    ----------
    make_model : returns an unfitted forecaster (called once per fold; on a Dask cluster once,
        and each fold task fits its own copy)
    X : model inputs (with pool_id and timestamp)
    y : the target's labels on X's index (see ``models.forecasts.inputs_and_labels``)
    folds : walk-forward folds whose row positions refer to X (``models.cv``)
    target, freq, horizon_periods : what is forecast, the panel frequency, the label horizon
        in periods (for the seasonal-naive forecast and stress lead times)
    alarm_threshold : P(stress) that counts as an alarm (lead time, false alarms), or
        ``"auto"``: each fold's fitted model chooses its own on its training window
        (``models.alarm.fit_alarm_threshold``) and its test rows are scored at it
    alarm_x : with ``"auto"``, the alarm share aimed at, as a multiple of the fold's training
        base rate
    on_fold : called with (fold number, fold metrics) after each fold; may raise to stop
    onset : for stress, the periods from each row to its first crossing
        (``fwd_stress_onset``) on X's index; without it, onsets are placed one horizon after
        the first stressed row of an event
    reselect_every : fold i selects on inner folds when i % reselect_every == 0; the folds
        between refit, on their own training rows, the choice and out-of-sample calibration
        of the latest selecting fold before them (made on rows before its cutoff, so before
        theirs) for models that can keep one (``selection_from``); 1: every fold selects.
        Folds on a cluster always select.

    Inside ``models.gbm_dask.use_dask(client)`` the folds run as tasks on the cluster, one per
    fold, each fitting in its worker with the worker's threads (not data-parallel); results
    come back in fold order and ``on_fold`` is called after all of them, in order. Without a
    client they run here one after another.

    Raises ForecastError when X and y do not share one index or a fold points past X.
    """
    if not X.index.equals(y.index):
        raise ForecastError("X and y must share one index: align the labels to the inputs by "
                            "(pool_id, timestamp) first (models.forecasts.inputs_and_labels)")
    if not folds:
        raise ForecastError("no folds to evaluate on")
    n = len(X)
    for i, f in enumerate(folds):
        if max(f.train_idx.max(), f.test_idx.max()) >= n:
            raise ForecastError(f"fold {i} refers to row {max(f.train_idx.max(), f.test_idx.max())}"
                                f" but X has {n} rows: folds must be made on X's timestamps")
    task: dict[str, Any] = {"X": X, "y": y, "onset": onset, "target": target, "freq": freq,
            "horizon_periods": horizon_periods, "alarm_threshold": alarm_threshold,
            "alarm_x": alarm_x}
    last = len(folds) - 1
    client = active_client()
    if client is None:
        out, source = [], None
        for i, f in enumerate(folds):
            out.append(_run_fold((i, f, True), _keeping(make_model, None if
                                 i % max(1, reselect_every) == 0 else source), **task))
            if i % max(1, reselect_every) == 0:
                source = out[-1][2]
            if i != last:
                out[-1] = (out[-1][0], out[-1][1], None)
            if on_fold is not None:
                on_fold(i, out[-1][1])
    else:
        with use_dask(None):  # the template is a plain model: tasks never nest lightgbm.dask
            template = make_model()
        out = fan_out(client, _fold_task, [(i, f, i == last) for i, f in enumerate(folds)],
                      template=template, threads=worker_threads(client), **task)
        source = out[-1][2]  # every fold selects on a cluster
        for i, (_, m, _) in enumerate(out):
            if on_fold is not None:
                on_fold(i, m)
    rows = [{FOLD: i, CUTOFF: f.cutoff, "test_start": f.test_start, "test_end": f.test_end,
             "train_rows": len(f.train_idx), "test_rows": len(f.test_idx), **m}
            for i, (f, (_, m, _)) in enumerate(zip(folds, out, strict=True))]
    P = pd.concat([p for p, _, _ in out])
    model = out[-1][2]
    assert model is not None
    return Evaluation(predictions=P, folds=pd.DataFrame(rows),
                      metrics=score_predictions(target, P, horizon_periods, alarm_threshold,
                                                freq),
                      model=model, selection=source)


FoldResult = tuple[pd.DataFrame, dict[str, float], BaseForecaster | None]


def keep_selection(model: BaseForecaster, source: BaseForecaster | None) -> BaseForecaster:
    """Have an unfitted model keep the choice of a fitted one of the same kind and settings."""
    if (source is not None and hasattr(model, "selection_from") and type(source) is type(model)
            and source.get_params() == model.get_params()):
        model.selection_from = source  # type: ignore[attr-defined]
    return model


def _keeping(make_model: Callable[[], BaseForecaster],
             source: BaseForecaster | None) -> Callable[[], BaseForecaster]:
    return lambda: keep_selection(make_model(), source)


def _run_fold(item: tuple[int, Fold, bool], make_model: Callable[[], BaseForecaster],
              X: pd.DataFrame, y: pd.Series, onset: pd.Series | None, target: str, freq: str,
              horizon_periods: int, alarm_threshold: float | str,
              alarm_x: float) -> FoldResult:
    """Fit one fold, forecast its test block: (predictions, fold metrics, model if kept)."""
    i, f, keep_model = item
    X_train, y_train, test = X.iloc[f.train_idx], y.iloc[f.train_idx], X.iloc[f.test_idx]
    model = make_model().fit(X_train, y_train)
    p = model.predict(test)
    p.insert(0, ACTUAL, y.iloc[f.test_idx].to_numpy(float))
    p.insert(0, FOLD, i)
    p.insert(0, CUTOFF, f.cutoff)
    p.insert(0, TIMESTAMP, test[TIMESTAMP].to_numpy())
    p.insert(0, POOL_ID, test[POOL_ID].to_numpy())
    if Target(target) is not Target.stress:
        p[MASE_SCALE] = _mase_scale(target, X_train, y_train, test, freq, horizon_periods)
    else:
        if onset is not None:
            p[ONSET] = onset.iloc[f.test_idx].to_numpy(float)
        p[THRESHOLD_COLUMN] = fit_alarm_threshold(model, X_train, y_train, alarm_x) \
            if alarm_threshold == AUTO else float(alarm_threshold)
    m = score_predictions(target, p, horizon_periods, alarm_threshold, freq)
    return p, m, model if keep_model else None


def _fold_task(item: tuple[int, Fold, bool], template: BaseForecaster, threads: int,
               **task: Any) -> FoldResult:
    """One fold as a cluster task: a copy of the unfitted template, the worker's threads."""
    with use_dask(None), use_threads(threads):
        return _run_fold(item, lambda: copy.deepcopy(template), **task)
