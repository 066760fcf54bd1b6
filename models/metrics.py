"""Forecast metrics: pinball loss, MASE vs seasonal naive, coverage, AUC, Brier, lead time."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["pinball_loss", "mase", "coverage", "stress_scores", "median_lead_time"]


def pinball_loss(y: np.ndarray, q: np.ndarray, alpha: float) -> float:
    """Mean pinball (quantile) loss of forecasts q for level alpha."""
    d = np.asarray(y, float) - np.asarray(q, float)
    return float(np.nanmean(np.maximum(alpha * d, (alpha - 1) * d)))


def mase(y: np.ndarray, pred: np.ndarray, naive: np.ndarray) -> float:
    """Mean absolute error relative to the seasonal-naive forecast's on the same rows."""
    y, pred, naive = (np.asarray(a, float) for a in (y, pred, naive))
    ok = np.isfinite(y) & np.isfinite(pred) & np.isfinite(naive)
    denom = np.mean(np.abs(y[ok] - naive[ok]))
    return float(np.mean(np.abs(y[ok] - pred[ok])) / denom) if denom > 0 else float("nan")


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of outcomes inside [lo, hi] (nominal 0.8 for p10-p90)."""
    y = np.asarray(y, float)
    ok = np.isfinite(y)
    return float(np.mean((y[ok] >= np.asarray(lo)[ok]) & (y[ok] <= np.asarray(hi)[ok])))


def stress_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, PR-AUC, Brier score and base rate of stress probabilities."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    out = {"brier": float(np.mean((p - y) ** 2)), "base_rate": float(y.mean())}
    if 0 < y.sum() < len(y):
        out["auc"] = float(roc_auc_score(y, p))
        out["pr_auc"] = float(average_precision_score(y, p))
    else:
        out["auc"] = out["pr_auc"] = float("nan")
    return out


def median_lead_time(
    frame: pd.DataFrame, p: np.ndarray, threshold: float, horizon_periods: int,
    label: str = "fwd_stress",
) -> float:
    """Median periods between the first alarm (p >= threshold) and each stress onset.

    An onset is the first period a pool's stress rule fires, i.e. the period just after the
    first row whose forward label turns 1 after being 0; alarms are searched in the window of
    up to twice the horizon before the onset. Onsets with no alarm count as lead 0.
    """
    f = frame[["pool_id", label]].copy()
    f["p"] = np.asarray(p, float)
    leads: list[float] = []
    for _, g in f.groupby("pool_id", sort=False):
        lab = g[label].to_numpy()
        alarm = g["p"].to_numpy() >= threshold
        turn = np.flatnonzero((lab[1:] == 1) & (lab[:-1] == 0)) + 1
        for i in turn.tolist():
            onset = i + horizon_periods  # the label at i is the first to see the event
            lo = max(0, onset - 2 * horizon_periods)
            win = np.flatnonzero(alarm[lo:onset])
            leads.append(float(onset - (lo + int(win[0]))) if len(win) else 0.0)
    return float(np.median(leads)) if leads else float("nan")
