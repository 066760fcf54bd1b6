"""Compiled kernels of the cross-pool features: neighbour means and per-period medians.

Like ``features._kernels`` they walk time in the outer loop over (time x pool) grids, are
single-threaded and release the GIL.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["neighbour_mean", "row_nanmedian"]


@njit(cache=True, nogil=True, error_model="numpy")
def neighbour_mean(x, tok, pair, out):  # type: ignore[no-untyped-def]
    """Mean over the other columns that share a token with each column, as
    :func:`features._kernels.group_neighbours` without ``want_max``: per row, each token's and
    each token pair's sum and count of valid values (summed in column order), and each
    column's neighbours from them. NaN where no neighbour has a value.

    ``tok`` (columns x 2) holds each column's two token numbers and ``pair`` the number of its
    unordered token pair: a column sharing both tokens is one neighbour, not two.
    """
    n_t, n_p = x.shape
    n_tok = 0
    n_pair = 0
    for p in range(n_p):
        n_tok = max(n_tok, tok[p, 0] + 1, tok[p, 1] + 1)
        n_pair = max(n_pair, pair[p] + 1)
    ts = np.empty(n_tok)
    tc = np.empty(n_tok)
    ps = np.empty(n_pair)
    pc = np.empty(n_pair)
    for t in range(n_t):
        row, o = x[t], out[t]
        ts[:] = 0.0
        tc[:] = 0.0
        ps[:] = 0.0
        pc[:] = 0.0
        for p in range(n_p):
            v = np.float64(row[p])
            if v != v:
                continue
            a, b = tok[p, 0], tok[p, 1]
            ts[a] += v
            tc[a] += 1.0
            if b != a:
                ts[b] += v
                tc[b] += 1.0
            ps[pair[p]] += v
            pc[pair[p]] += 1.0
        for p in range(n_p):
            a, b = tok[p, 0], tok[p, 1]
            v = np.float64(row[p])
            own = 1.0 if v == v else 0.0
            tot = ts[a] - (v if own else 0.0)
            cnt = tc[a] - own
            if b != a:  # pools of the same pair sit in both token groups: count them once
                tot += ts[b] - ps[pair[p]]
                cnt += tc[b] - pc[pair[p]]
            o[p] = tot / cnt if cnt > 0.5 else np.nan
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def row_nanmedian(x, out):  # type: ignore[no-untyped-def]
    """Median of each row's valid values (NaN for a row without any), as ``np.nanmedian``."""
    n_t, n_p = x.shape
    buf = np.empty(n_p)
    for t in range(n_t):
        k = 0
        for p in range(n_p):
            v = np.float64(x[t, p])
            if v == v:
                buf[k] = v
                k += 1
        out[t] = np.median(buf[:k]) if k > 0 else np.nan
    return out
