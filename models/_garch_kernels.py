"""Compiled GARCH(1,1) recursions: the volatility forecast and the Gaussian likelihood.

The likelihood replicates the ``arch`` package's constant-mean GARCH(1,1) objective term by
term: the variance starts from a fixed backcast (for both the squared residual and the
variance before the first return), each variance is clipped into per-row bounds the way
``arch``'s bounds check does (floor at the lower bound, logarithmic growth above the upper
one), and the objective is the negative normal log-likelihood. Its gradient is propagated
through the recursion analytically, clipping included. The kernels are single-threaded and
release the GIL.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["forecast_vol", "neg_loglik", "neg_loglik_grad", "ewma_variance"]

_LOG_2PI = float(np.log(2.0 * np.pi))
_DBL_MAX = float(np.finfo(np.float64).max)


@njit(cache=True, nogil=True, error_model="numpy")
def forecast_vol(ret, s2, mu, omega, a, b, level, decay, h, ppy, out):  # type: ignore[no-untyped-def]
    """Annualised h-period volatility forecast after each return into ``out``.

    A non-finite return updates the variance with its own expectation (no news); ``decay`` is
    sum_k phi^(k-1) over the horizon, passed in so that it equals the caller's value exactly.
    """
    for t in range(ret.shape[0]):
        r = ret[t]
        e2 = (r - mu) ** 2 if np.isfinite(r) else s2
        s2 = omega + a * e2 + b * s2
        total = h * level + (s2 - level) * decay + h * mu * mu
        out[t] = np.sqrt(max(total, 0.0) / h * ppy)


@njit(cache=True, nogil=True, error_model="numpy")
def _clip(s, lo, hi):  # type: ignore[no-untyped-def]
    """Variance kept in [lo, hi] as arch's bounds check does, and its derivative factor."""
    if s < lo:
        return lo, 0.0
    if s > hi:
        if s > _DBL_MAX:
            return hi + 1000.0, 0.0
        return hi + np.log(s / hi), 1.0 / s
    return s, 1.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _log_chunk(prod, total):  # type: ignore[no-untyped-def]
    """Running product of variances and sum of logs, the product folded in when out of range.

    One logarithm per several variances instead of one each (the log dominates the cost); a
    product is folded before it could over- or underflow (for variances within 1e+-200).
    """
    if prod > 1e100 or prod < 1e-100:
        return 1.0, total + np.log(prod)
    return prod, total


@njit(cache=True, nogil=True, error_model="numpy")
def neg_loglik(x, y, backcast, lo, hi):  # type: ignore[no-untyped-def]
    """Negative normal log-likelihood of returns y under (mu, omega, alpha, beta) = x."""
    mu, omega, a, b = x[0], x[1], x[2], x[3]
    n = y.shape[0]
    total = 0.0
    prod = 1.0  # product of variances not yet in total as logs
    e2_prev = backcast
    s_prev = backcast
    for t in range(n):
        s = omega + a * e2_prev + b * s_prev
        s, _ = _clip(s, lo[t], hi[t])
        e = y[t] - mu
        total += e * e / s
        prod, total = _log_chunk(prod, total)
        prod *= s
        e2_prev = e * e
        s_prev = s
    return 0.5 * (total + np.log(prod) + n * _LOG_2PI)


@njit(cache=True, nogil=True, error_model="numpy")
def neg_loglik_grad(x, y, backcast, lo, hi, grad):  # type: ignore[no-untyped-def]
    """Negative normal log-likelihood (as neg_loglik) and its gradient in x into ``grad``."""
    mu, omega, a, b = x[0], x[1], x[2], x[3]
    n = y.shape[0]
    total = 0.0
    prod = 1.0
    g_mu = g_om = g_a = g_b = 0.0
    e2_prev = backcast
    s_prev = backcast
    e_prev = 0.0  # the backcast does not depend on mu
    d_mu = d_om = d_a = d_b = 0.0  # derivatives of the previous variance
    for t in range(n):
        s = omega + a * e2_prev + b * s_prev
        n_mu = -2.0 * a * e_prev + b * d_mu
        n_om = 1.0 + b * d_om
        n_a = e2_prev + b * d_a
        n_b = s_prev + b * d_b
        s, f = _clip(s, lo[t], hi[t])
        d_mu, d_om, d_a, d_b = f * n_mu, f * n_om, f * n_a, f * n_b
        e = y[t] - mu
        e2 = e * e
        inv = 1.0 / s
        total += e2 * inv
        prod, total = _log_chunk(prod, total)
        prod *= s
        w = 0.5 * inv * (1.0 - e2 * inv)  # d(term)/d(variance), halved
        g_mu += w * d_mu - e * inv
        g_om += w * d_om
        g_a += w * d_a
        g_b += w * d_b
        e_prev = e
        e2_prev = e2
        s_prev = s
    grad[0], grad[1], grad[2], grad[3] = g_mu, g_om, g_a, g_b
    return 0.5 * (total + np.log(prod) + n * _LOG_2PI)


@njit(cache=True, nogil=True, error_model="numpy")
def ewma_variance(e, lam, start, out):  # type: ignore[no-untyped-def]
    """RiskMetrics variance of residuals e (decay lam) after ``start`` into ``out``."""
    s = (1.0 - lam) * start + lam * start
    for t in range(e.shape[0]):
        if t > 0:
            s = (1.0 - lam) * (e[t - 1] * e[t - 1]) + lam * s
        out[t] = s
