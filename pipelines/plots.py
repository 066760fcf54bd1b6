"""Plots saved by the jobs: forecast vs actual, feature importance, stress calibration."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["plot_forecast", "plot_importance", "plot_calibration"]


def plot_forecast(P: pd.DataFrame, path: Path, title: str) -> Path:
    """Forecast band (q10-q90), median and actual for the pool with the most test rows."""
    pool = P["pool_id"].value_counts().index[0]
    g = P[P["pool_id"] == pool].sort_values("timestamp")
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.fill_between(g["timestamp"], g["q10"], g["q90"], alpha=0.3, label="q10-q90")
    ax.plot(g["timestamp"], g["q50"], label="q50")
    ax.plot(g["timestamp"], g["y"], color="black", lw=0.8, label="actual")
    ax.set_title(f"{title}: forecast vs actual, {pool}")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_importance(imp: pd.Series, path: Path, title: str, top: int = 20) -> Path:
    """Horizontal bars of the top features by gain."""
    s = imp.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(s) + 1))
    ax.barh(s.index, s.to_numpy())
    ax.set_title(f"{title}: feature importance (gain)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_calibration(y: np.ndarray, p: np.ndarray, path: Path, title: str, bins: int = 10) -> Path:
    """Reliability curve: observed stress frequency per predicted-probability bin."""
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    mp = [p[idx == b].mean() for b in range(bins) if (idx == b).any()]
    my = [y[idx == b].mean() for b in range(bins) if (idx == b).any()]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey")
    ax.plot(mp, my, marker="o")
    ax.set_xlabel("predicted P(stress)")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"{title}: calibration")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
