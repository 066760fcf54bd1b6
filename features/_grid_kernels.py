"""Compiled moves between the long panel rows and the dense (time x pool) grid.

A pool's rows are one run of consecutive periods (``features._wide.Grid.runs``: first row,
first period, periods). The kernels are single-threaded and release the GIL.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["gather_runs", "gather_clean", "scatter_runs"]


@njit(cache=True, nogil=True, error_model="numpy")
def gather_runs(w, runs, block, out):  # type: ignore[no-untyped-def]
    """Long rows from a grid whose rows come one pool after another, each pool's in time
    order without gaps: ``runs[p]`` = (first row, first period, periods) of pool p, so row
    ``runs[p, 0] + i`` is ``w[runs[p, 1] + i, p]``. A blocked transpose: ``block`` grid rows
    of every pool are read while they are in cache.
    """
    n_t, n_p = w.shape
    for t0 in range(0, n_t, block):
        t1 = min(t0 + block, n_t)
        for p in range(n_p):
            r0, a, n = runs[p, 0], runs[p, 1], runs[p, 2]
            base = r0 - a
            for t in range(max(t0, a), min(t1, a + n)):
                out[base + t] = w[t, p]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def gather_clean(w, runs, block, missing, out):  # type: ignore[no-untyped-def]
    """:func:`gather_runs` that also cleans: every value that is not finite once in ``out``'s
    dtype, or whose row is flagged in ``missing`` (empty: none), becomes NaN."""
    n_t, n_p = w.shape
    flagged = missing.shape[0] > 0
    for t0 in range(0, n_t, block):
        t1 = min(t0 + block, n_t)
        for p in range(n_p):
            r0, a, n = runs[p, 0], runs[p, 1], runs[p, 2]
            base = r0 - a
            for t in range(max(t0, a), min(t1, a + n)):
                i = base + t
                out[i] = w[t, p]
                v = out[i]  # the stored (possibly rounded) value decides
                if not (v - v == 0) or (flagged and missing[i]):
                    out[i] = np.nan
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def scatter_runs(values, runs, out):  # type: ignore[no-untyped-def]
    """The inverse of :func:`gather_runs`: long rows into the grid (cells not listed kept)."""
    n_p = out.shape[1]
    for p in range(n_p):
        r0, a, n = runs[p, 0], runs[p, 1], runs[p, 2]
        for i in range(n):
            out[a + i, p] = values[r0 + i]
    return out
