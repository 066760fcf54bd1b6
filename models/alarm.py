"""Alarm thresholds of stress forecasters, chosen from their training window only.

An alarm is a row whose P(stress) reaches a threshold. Calibrated probabilities of a rare event
seldom reach a fixed level such as 0.25, so a fixed threshold can leave a model silent (lead 0,
no alarm) or, set low, alarming always. Here the threshold is chosen per fit so that the model
alarms on about ``alarm_x`` times the share of its training rows that were stressed: it is the
smallest score at which at most that share of reference scores lies at or above it. The
reference scores are the model's out-of-sample scores on the inner walk-forward folds of its
training window when its fit computed them (``inner_scores_``: no extra fit; the GRU scores its
held-out early-stopping tail), else its in-sample scores on the training rows (one prediction;
no row after the window is read).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from models.base import PROB_COLUMN, ForecastError

__all__ = ["AUTO", "DEFAULT_ALARM_X", "THRESHOLD_COLUMN", "share_threshold",
           "choose_threshold", "store_threshold", "fit_alarm_threshold", "resolve_thresholds",
           "INNER", "IN_SAMPLE", "FIXED", "has_scores", "fix_threshold"]

AUTO = "auto"  # the alarm threshold setting that chooses it per fit
DEFAULT_ALARM_X = 2.0  # alarm share as a multiple of the training base rate
THRESHOLD_COLUMN = "alarm_threshold"  # per prediction row: the threshold of its fold's model
INNER, IN_SAMPLE = "inner_folds", "training_rows"  # what the threshold was chosen on
FIXED = "fixed"  # a threshold given by the run's settings, chosen on nothing


def share_threshold(scores: np.ndarray, share: float) -> float:
    """The smallest score t with at most ``share`` of the finite ``scores`` at or above t.

    Ties never push the share over: when the quantile score is shared by many rows the
    threshold moves to the next higher score, and above the largest score (no alarm) when
    none is left. NaN when there is no finite score.

    Parameters
    ----------
    scores : reference P(stress) scores, fraction
    share : wanted share of scores in alarm, fraction (>= 1: every row alarms)
    """
    s = np.sort(np.asarray(scores, float)[np.isfinite(scores)])
    n = len(s)
    if n == 0:
        return float("nan")
    k = int(np.floor(min(max(share, 0.0), 1.0) * n))  # rows allowed in alarm
    if k >= n:
        return float(s[0])
    if k == 0:
        return float(np.nextafter(s[-1], np.inf))
    t = s[n - k]
    if n - np.searchsorted(s, t, side="left") > k:  # ties at t: the next distinct score
        j = int(np.searchsorted(s, t, side="right"))
        return float(s[j]) if j < n else float(np.nextafter(s[-1], np.inf))
    return float(t)


def choose_threshold(scores: np.ndarray, y: np.ndarray, alarm_x: float) -> float:
    """Threshold at which about ``alarm_x`` x the base rate of ``y`` of ``scores`` alarm.

    Parameters
    ----------
    scores : reference P(stress) scores of the training window (inner folds or in-sample)
    y : the training window's 0/1 stress labels (NaN: unlabelled, ignored)
    alarm_x : alarm share as a multiple of the base rate (> 0)
    """
    if not alarm_x > 0:
        raise ForecastError(f"alarm_x must be > 0, got {alarm_x}")
    yv = np.asarray(y, float)
    yv = yv[np.isfinite(yv)]
    if len(yv) == 0:
        return float("nan")
    return share_threshold(scores, alarm_x * float(yv.mean()))


def has_scores(scores: np.ndarray | None) -> bool:
    """True when ``scores`` holds at least one finite score."""
    return scores is not None and bool(np.isfinite(np.asarray(scores, float)).any())


def store_threshold(model: Any, inner: np.ndarray | None,
                    in_sample: Callable[[], np.ndarray], y: np.ndarray,
                    alarm_x: float = DEFAULT_ALARM_X) -> float:
    """Choose the threshold (``choose_threshold``) and store it on ``model`` with what it was
    chosen on: ``alarm_threshold_``, ``alarm_x_``, ``alarm_basis_``.

    The reference scores are ``inner`` (out-of-sample scores of the training window) when it
    holds a finite score, else ``in_sample()`` (the model's scores of its training rows).
    """
    if has_scores(inner):
        scores, basis = np.asarray(inner, float), INNER
    else:
        scores, basis = np.asarray(in_sample(), float), IN_SAMPLE
    thr = choose_threshold(scores, y, alarm_x)
    model.alarm_threshold_, model.alarm_x_, model.alarm_basis_ = thr, float(alarm_x), basis
    return thr


def fix_threshold(model: Any, threshold: float) -> float:
    """Give a stress model a fixed alarm threshold (P(stress), fraction) chosen on nothing."""
    if not 0.0 < float(threshold) < 1.0:
        raise ForecastError(f"alarm threshold must be a probability in (0, 1), got {threshold}")
    model.alarm_threshold_, model.alarm_x_, model.alarm_basis_ = float(threshold), math.nan, FIXED
    return float(threshold)


def fit_alarm_threshold(model: Any, X: pd.DataFrame, y: pd.Series | np.ndarray,
                        alarm_x: float = DEFAULT_ALARM_X) -> float:
    """Choose a fitted stress model's alarm threshold on its training window and store it.

    Sets ``alarm_threshold_`` (P(stress), fraction), ``alarm_x_`` and ``alarm_basis_``
    (``"inner_folds"`` or ``"training_rows"``) on the model and returns the threshold.

    Parameters
    ----------
    model : a fitted stress forecaster; its ``inner_scores_`` (out-of-sample scores of its
        inner folds) are used when present, else its predictions on X
    X, y : the rows and labels the model was fitted on (its training window)
    alarm_x : alarm share as a multiple of the window's stress base rate
    """
    yv = np.asarray(y, float)
    if len(yv) != len(X):
        raise ForecastError(f"alarm threshold: y has {len(yv)} rows, X has {len(X)}")
    ok = np.isfinite(yv)
    return store_threshold(model, getattr(model, "inner_scores_", None),
                           lambda: model.predict(X.loc[ok])[PROB_COLUMN].to_numpy(float),
                           yv, alarm_x)


def resolve_thresholds(predictions: pd.DataFrame, alarm_threshold: float | str) -> np.ndarray:
    """Per prediction row, the threshold its alarms are scored at.

    ``"auto"``: the ``alarm_threshold`` column (each fold's model's own threshold); a number:
    that threshold for every row.
    """
    if alarm_threshold == AUTO:
        if THRESHOLD_COLUMN not in predictions:
            raise ForecastError(f"alarm_threshold 'auto' needs a {THRESHOLD_COLUMN!r} column "
                                f"in the predictions (set by models.evaluate per fold)")
        return predictions[THRESHOLD_COLUMN].to_numpy(float)
    if isinstance(alarm_threshold, str):
        raise ForecastError(f"alarm_threshold must be {AUTO!r} or a probability, got "
                            f"{alarm_threshold!r}")
    return np.full(len(predictions), float(alarm_threshold))
