"""Compiled kernels of the forward-looking labels: worst forward moves, trailing quantile
thresholds and first threshold crossings over (time x pool) grids.

Only `features.labels` may use them (they look forward by design). Like `features._kernels`
they walk time in the outer loop, are single-threaded and release the GIL.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["forward_worst", "lagged_quantile", "lagged_quantile_pooled", "first_crossings"]


@njit(cache=True, nogil=True, error_model="numpy")
def forward_worst(ratio, net, h, div_worst, out_worst, t0, t1):  # type: ignore[no-untyped-def]
    """Worst forward move of each (t, pool) window (t, t + h], t in [t0, t1): max
    |ratio[t+k] - ratio[t]| into ``div_worst`` and max -(net[t+k] - net[t]) into
    ``out_worst``, k = 1..h; NaN in both unless every move of the window is finite."""
    n_t, n_p = ratio.shape
    bad = np.empty(n_p, np.bool_)
    for t in range(t0, t1):
        dw, ow = div_worst[t], out_worst[t]
        if t + h >= n_t:
            for p in range(n_p):
                dw[p] = np.nan
                ow[p] = np.nan
            continue
        r0, m0 = ratio[t], net[t]
        for p in range(n_p):
            dw[p] = -np.inf
            ow[p] = -np.inf
            bad[p] = False
        for k in range(1, h + 1):
            rk, mk = ratio[t + k], net[t + k]
            for p in range(n_p):
                d = abs(rk[p] - r0[p])
                o = -(mk[p] - m0[p])
                bad[p] |= not (d - d == 0.0 and o - o == 0.0)  # NaN or infinite
                dw[p] = max(dw[p], d)
                ow[p] = max(ow[p], o)
        for p in range(n_p):
            if bad[p]:
                dw[p] = np.nan
                ow[p] = np.nan
    return div_worst, out_worst


@njit(cache=True, nogil=True, inline="always")
def _tree_add(tree, j, d):  # type: ignore[no-untyped-def]
    """Add d at 1-based position j of a Fenwick tree of counts."""
    n = tree.shape[0] - 1
    while j <= n:
        tree[j] += d
        j += j & -j


@njit(cache=True, nogil=True, inline="always")
def _tree_select(tree, top, want):  # type: ignore[no-untyped-def]
    """0-based position of the value with ``want`` counted values before it (``top``: the
    largest power of two <= the tree's size)."""
    n = tree.shape[0] - 1
    pos = 0
    step = top
    while step > 0:
        nxt = pos + step
        if nxt <= n and tree[nxt] <= want:
            pos = nxt
            want -= tree[nxt]
        step //= 2
    return pos


@njit(cache=True, nogil=True, error_model="numpy")
def lagged_quantile(x, lag, w, minp, q, out, count):  # type: ignore[no-untyped-def]
    """q-quantile ("lower": the int(q (n - 1))-th smallest) of the valid values of x lagged
    by ``lag`` columns over the trailing w columns, per row (a pool's series, pools x time),
    into ``out`` (NaN with fewer than ``minp`` values) and the number of valid values into
    ``count``.

    Each series' values are ranked once. The selected value is a cursor over the ranks that
    knows how many window values lie below it; a step adds one value, drops one and moves the
    wanted position by at most one, so the cursor walks to the nearest window values instead
    of searching the window again.
    """
    n_p, n_t = x.shape
    inside = np.zeros(n_t, np.bool_)
    rank = np.empty(n_t, np.int64)
    lo = max(minp, 1)
    for p in range(n_p):
        col, o, c = x[p], out[p], count[p]
        order = np.argsort(col, kind="mergesort")  # NaN last
        srt = col[order]
        for i in range(n_t):
            rank[order[i]] = i
        inside[:] = False
        n = 0
        cur = -1  # rank of the selected value (a window value), -1 with an empty window
        below = 0  # window values ranked below cur
        for t in range(n_t):
            i = t - lag  # entering the window
            if i >= 0 and col[i] == col[i]:
                r = rank[i]
                inside[r] = True
                n += 1
                if cur < 0:
                    cur, below = r, 0
                elif r < cur:
                    below += 1
            i = t - w - lag  # leaving it
            if i >= 0 and col[i] == col[i]:
                r = rank[i]
                inside[r] = False
                n -= 1
                if n == 0:
                    cur, below = -1, 0
                elif r < cur:
                    below -= 1
                elif r == cur:  # the selected value left: the next window value above it,
                    if n > below:  # of which there are n - below
                        j = cur + 1
                        while not inside[j]:
                            j += 1
                        cur = j
                    else:  # or else the one below, which has below - 1 values under it
                        j = cur - 1
                        while not inside[j]:
                            j -= 1
                        cur, below = j, below - 1
            c[t] = n
            if n == 0:
                o[t] = np.nan
                continue
            want = np.int64(q * (n - 1))
            while below < want:  # up to the next window value
                j = cur + 1
                while not inside[j]:
                    j += 1
                cur, below = j, below + 1
            while below > want:  # down to the previous one
                j = cur - 1
                while not inside[j]:
                    j -= 1
                cur, below = j, below - 1
            o[t] = srt[cur] if n >= lo else np.nan
    return out, count


@njit(cache=True, nogil=True, error_model="numpy")
def first_crossings(ratio, net, dev, stable, h, div_thr, flt_thr, peg_break,
                    onset, cause, t0, t1):  # type: ignore[no-untyped-def]
    """First k in 1..h at which each window (t, t + h], t in [t0, t1), crosses:
    |ratio[t+k] - ratio[t]| > div_thr, -(net[t+k] - net[t]) > flt_thr, or (``stable`` pools)
    dev[t+k] > peg_break.

    ``onset`` gets the earliest such k (h + 1 when none) and ``cause`` the bit mask of the
    conditions that crossed (1 divergence, 2 flight, 4 peg).
    """
    n_t, n_p = ratio.shape
    kd = np.empty(n_p, np.int64)
    kf = np.empty(n_p, np.int64)
    kp = np.empty(n_p, np.int64)
    peg = dev.shape[0] > 0
    for t in range(t0, t1):
        r0, m0, dt, ft = ratio[t], net[t], div_thr[t], flt_thr[t]
        kd[:] = 0
        kf[:] = 0
        kp[:] = 0
        for k in range(1, min(h, n_t - 1 - t) + 1):
            rk, mk = ratio[t + k], net[t + k]
            for p in range(n_p):
                if kd[p] == 0 and abs(rk[p] - r0[p]) > dt[p]:
                    kd[p] = k
                if kf[p] == 0 and -(mk[p] - m0[p]) > ft[p]:
                    kf[p] = k
            if peg:
                dk = dev[t + k]
                for p in range(n_p):
                    if kp[p] == 0 and stable[p] and dk[p] > peg_break:
                        kp[p] = k
        on, ca = onset[t], cause[t]
        for p in range(n_p):
            c = 0
            first = h + 1
            if kd[p] > 0:
                c |= 1
                first = min(first, kd[p])
            if kf[p] > 0:
                c |= 2
                first = min(first, kf[p])
            if kp[p] > 0:
                c |= 4
                first = min(first, kp[p])
            on[p] = first
            ca[p] = c
    return onset, cause


@njit(cache=True, nogil=True, error_model="numpy")
def lagged_quantile_pooled(x, lag, w, minp, q, out, count):  # type: ignore[no-untyped-def]
    """As ``lagged_quantile``, but over the valid values of every row (pool) together: at
    column t, the q-quantile ("lower") of x[:, t - lag - w + 1 .. t - lag] into ``out[t]``
    (NaN with fewer than ``minp`` values) and the number of values into ``count[t]``."""
    n_p, n_t = x.shape
    flat = x.T.copy().reshape(-1)  # time-major: column t holds flat[t n_p .. (t + 1) n_p)
    n = flat.shape[0]
    order = np.argsort(flat, kind="mergesort")  # NaN last
    srt = flat[order]
    rank = np.empty(n, np.int64)
    for i in range(n):
        rank[order[i]] = i
    tree = np.zeros(n + 1, np.int64)
    top = 1
    while top * 2 <= n:
        top *= 2
    lo = max(minp, 1)
    m = 0
    for t in range(n_t):
        i = t - lag  # entering the window
        if i >= 0:
            for p in range(n_p):
                v = flat[i * n_p + p]
                if v == v:
                    _tree_add(tree, rank[i * n_p + p] + 1, 1)
                    m += 1
        i = t - w - lag  # leaving it
        if i >= 0:
            for p in range(n_p):
                v = flat[i * n_p + p]
                if v == v:
                    _tree_add(tree, rank[i * n_p + p] + 1, -1)
                    m -= 1
        count[t] = m
        if m < lo:
            out[t] = np.nan
            continue
        out[t] = srt[_tree_select(tree, top, np.int64(q * (m - 1)))]
    return out, count
