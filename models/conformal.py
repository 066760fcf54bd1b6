"""Conformal adjustment of quantile intervals on out-of-sample (walk-forward) residuals.

Conformalized quantile regression, one tail at a time: on held-out rows the scores
``lo - y`` and ``y - hi`` say how far each outcome fell outside the predicted band; the band is
then widened (or narrowed, when the scores are negative) by the finite-sample
``(1 - alpha / 2)`` quantile of each, so that each tail misses at most ``alpha / 2`` of
exchangeable new outcomes. Time series are not exchangeable: the held-out rows must come after
the rows the model was fitted on (walk-forward), and coverage holds approximately.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["conformal_quantile", "interval_offsets", "smearing_factor"]


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The finite-sample conformal quantile: the ceil((n + 1) level)-th smallest score.

    Returns +inf when there are too few scores for the level (no finite guarantee), NaN for
    no scores at all.
    """
    s = np.sort(np.asarray(scores, float)[np.isfinite(scores)])
    n = len(s)
    if n == 0:
        return math.nan
    k = math.ceil((n + 1) * level)
    return float(s[k - 1]) if k <= n else math.inf


def interval_offsets(y: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     coverage: float = 0.8) -> tuple[float, float]:
    """Amounts to move the lower bound down and the upper bound up for ``coverage``.

    Parameters
    ----------
    y : held-out outcomes (any units; log units for multiplicative bands)
    lo, hi : the band predicted for them before adjustment, same units
    coverage : target share of outcomes inside the adjusted band

    Returns
    -------
    (down, up) : new band = [lo - down, hi + up]; negative values narrow it. Each is 0 when
    there are too few finite rows to estimate it.
    """
    y, lo, hi = (np.asarray(a, float) for a in (y, lo, hi))
    ok = np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi)
    level = 1 - (1 - coverage) / 2
    down = conformal_quantile(lo[ok] - y[ok], level)
    up = conformal_quantile(y[ok] - hi[ok], level)
    return (down if math.isfinite(down) else 0.0, up if math.isfinite(up) else 0.0)


def smearing_factor(log_residuals: np.ndarray, cap: float = 50.0) -> float:
    """Duan's smearing estimate E[exp(e)] of log-scale residuals: mean / exp(point) factor.

    Turns a forecast of log y into a forecast of the mean of y without assuming normal errors.
    Capped at ``cap`` so that one wild residual cannot blow up the mean; 1 with no residuals.
    """
    r = np.asarray(log_residuals, float)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return 1.0
    return float(min(np.mean(np.exp(r - np.median(r))) * np.exp(np.median(r)), cap))
