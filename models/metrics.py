"""Forecast metrics: pinball loss, MASE (in-sample naive scale), coverage, AUC, Brier.

Event-level stress metrics (alarm lead times, false alarms) are in ``models.events``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["pinball_loss", "mase", "mase_scale", "coverage", "stress_scores", "reliability"]


def pinball_loss(y: np.ndarray, q: np.ndarray, alpha: float) -> float:
    """Mean pinball (quantile) loss of forecasts q for level alpha."""
    d = np.asarray(y, float) - np.asarray(q, float)
    return float(np.nanmean(np.maximum(alpha * d, (alpha - 1) * d)))


def mase_scale(
    y_train: np.ndarray, naive_train: np.ndarray,
    groups_train: np.ndarray | None = None, groups: np.ndarray | None = None,
) -> np.ndarray:
    """In-sample MAE of the seasonal-naive forecast on training rows: MASE's denominator.

    Parameters
    ----------
    y_train, naive_train : outcomes and seasonal-naive forecasts on the training rows (same
        units as the target, e.g. fraction per horizon).
    groups_train, groups : series id (pool) of each training row and of each evaluation row;
        give both to scale per series, or neither for one pooled scale.

    Returns
    -------
    Per evaluation row, its series' in-sample naive MAE (an array aligned to ``groups``), or a
    0-d array with the pooled MAE. A series with no finite training error, or a perfect naive
    forecast in-sample, falls back to the pooled MAE; NaN when that is not positive either.
    """
    if (groups_train is None) != (groups is None):
        raise ValueError("give both groups_train and groups (per-series scale) or neither")
    yt, nt = np.asarray(y_train, float), np.asarray(naive_train, float)
    if yt.shape != nt.shape:
        raise ValueError(f"y_train has {yt.shape[0]} rows, naive_train {nt.shape[0]}")
    err = np.abs(yt - nt)
    ok = np.isfinite(err)
    pooled = float(err[ok].mean()) if ok.any() else float("nan")
    pooled = pooled if pooled > 0 else float("nan")
    if groups is None or groups_train is None:
        return np.asarray(pooled)
    by = pd.Series(err[ok]).groupby(np.asarray(groups_train)[ok]).mean()
    by = by[by > 0]
    return pd.Series(np.asarray(groups)).map(by).fillna(pooled).to_numpy(float)


def mase(y: np.ndarray, pred: np.ndarray, *, scale: np.ndarray | float) -> float:
    """Mean absolute scaled error: each |y - pred| over its series' in-sample naive MAE.

    ``scale`` comes from :func:`mase_scale` on the training rows of the same fit (per row, or
    one number). 1 means as good as the seasonal-naive forecast was in-sample; lower is better.
    """
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    s = np.broadcast_to(np.asarray(scale, float), y.shape)
    q = np.abs(y - pred) / s
    ok = np.isfinite(q)
    return float(q[ok].mean()) if ok.any() else float("nan")


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


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability table of probabilities: per bin of equal width, mean forecast and outcome.

    Returns one row per non-empty bin: bin (left edge), n, predicted (mean p), observed (share
    of outcomes equal to 1). A calibrated forecast has observed close to predicted.
    """
    y, p = np.asarray(y, float), np.asarray(p, float)
    ok = np.isfinite(y) & np.isfinite(p)
    edges = np.linspace(0.0, 1.0, bins + 1)
    k = np.clip(np.digitize(p[ok], edges) - 1, 0, bins - 1)
    f = pd.DataFrame({"bin": edges[k], "p": p[ok], "y": y[ok]})
    g = f.groupby("bin")
    return pd.DataFrame({"n": g.size(), "predicted": g["p"].mean(),
                         "observed": g["y"].mean()}).reset_index()
