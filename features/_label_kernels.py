"""Compiled kernels of the forward-looking labels: worst forward moves, trailing quantile
thresholds and the stress label with its first threshold crossing over (time x pool) grids.

Only `features.labels` may use them (they look forward by design). Like `features._kernels`
they walk time in the outer loop, are single-threaded and release the GIL.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

__all__ = ["forward_worst", "lagged_quantile", "lagged_quantile_pooled", "order_keys",
           "lagged_quantile_sorted", "stress_outputs", "log_moves", "forward_ratio"]


@njit(cache=True, nogil=True, error_model="numpy")
def forward_worst(ratio, net, h, div_worst, out_worst, t0, t1):  # type: ignore[no-untyped-def]
    """Worst forward move of each (t, pool) window (t, t + h], t in [t0, t1): max
    |ratio[t+k] - ratio[t]| into ``div_worst`` and max -(net[t+k] - net[t]) into
    ``out_worst``, k = 1..h; NaN in both unless every move of the window is finite.

    Both are read off the window's extremes (|r - r0| and -(m - m0) are monotone on each side
    of r0, so the worst move is the one to the highest or lowest value, the same float), kept
    as suffix extremes of blocks of h periods and a running prefix of the next block: a few
    operations per value whatever h.
    """
    n_t, n_p = ratio.shape
    t_end = min(t1, n_t - h)  # windows that end inside the grid
    for t in range(max(t0, t_end), t1):
        for p in range(n_p):
            div_worst[t, p] = np.nan
            out_worst[t, p] = np.nan
    if h < 1:  # an empty window: no move at all
        for t in range(t0, t_end):
            for p in range(n_p):
                div_worst[t, p] = -np.inf
                out_worst[t, p] = -np.inf
        return div_worst, out_worst
    smax = np.empty((h, n_p))
    smin = np.empty((h, n_p))
    mmin = np.empty((h, n_p))
    sok = np.empty((h, n_p), np.bool_)
    pmax = np.empty(n_p)
    pmin = np.empty(n_p)
    pmm = np.empty(n_p)
    pok = np.empty(n_p, np.bool_)
    for s in range(t0 + 1, t_end + 1, h):  # block [s, s + h) of window starts t + 1
        for i in range(h - 1, -1, -1):
            r, m = ratio[s + i], net[s + i]
            for p in range(n_p):
                fin = r[p] - r[p] == 0.0 and m[p] - m[p] == 0.0
                if i == h - 1:
                    smax[i, p], smin[i, p], mmin[i, p], sok[i, p] = r[p], r[p], m[p], fin
                else:
                    smax[i, p] = max(r[p], smax[i + 1, p])
                    smin[i, p] = min(r[p], smin[i + 1, p])
                    mmin[i, p] = min(m[p], mmin[i + 1, p])
                    sok[i, p] = fin and sok[i + 1, p]
        for i in range(min(h, t_end + 1 - s)):
            t = s + i - 1
            r0, m0, dw, ow = ratio[t], net[t], div_worst[t], out_worst[t]
            if i > 0:  # the window reaches row s + h + i - 1 of the next block
                r, m = ratio[s + h + i - 1], net[s + h + i - 1]
                for p in range(n_p):
                    fin = r[p] - r[p] == 0.0 and m[p] - m[p] == 0.0
                    if i == 1:
                        pmax[p], pmin[p], pmm[p], pok[p] = r[p], r[p], m[p], fin
                    else:
                        pmax[p] = max(r[p], pmax[p])
                        pmin[p] = min(r[p], pmin[p])
                        pmm[p] = min(m[p], pmm[p])
                        pok[p] = fin and pok[p]
            for p in range(n_p):
                hi, lo, ml, ok = smax[i, p], smin[i, p], mmin[i, p], sok[i, p]
                if i > 0:
                    hi, lo, ml, ok = max(hi, pmax[p]), min(lo, pmin[p]), min(ml, pmm[p]), \
                        ok and pok[p]
                if ok and r0[p] - r0[p] == 0.0 and m0[p] - m0[p] == 0.0:
                    dw[p] = max(abs(hi - r0[p]), abs(lo - r0[p]))
                    ow[p] = -(ml - m0[p])
                else:
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
    ``count``. Each series' values are ranked by one sort (see ``_follow_quantile``)."""
    n_p, n_t = x.shape
    inside = np.zeros((n_t + 63) // 64, np.uint64)
    rank = np.empty(n_t, np.int64)
    for p in range(n_p):
        col = x[p]
        order = np.argsort(col, kind="mergesort")  # NaN last
        srt = col[order]
        for i in range(n_t):
            rank[order[i]] = i
        nv = 0
        for i in range(n_t):
            nv += col[i] == col[i]
        _follow_quantile(rank, srt, nv, inside, lag, w, max(minp, 1), q, out[p], count[p])
    return out, count


@njit(cache=True, nogil=True, error_model="numpy")
def lagged_quantile_pooled(flat, n_t, keys, bits, lag, w, minp, q, out, count):  # type: ignore[no-untyped-def]
    """As ``lagged_quantile``, but over the valid values of every pool together: at period
    t, the q-quantile ("lower") of the (periods x pools) grid ``flat`` (flattened, n_t
    periods) at periods t - lag - w + 1 .. t - lag into ``out[t]`` (NaN with fewer than
    ``minp`` values) and the number of values into ``count[t]``; ``keys``: the sorted
    ``order_keys`` of flat (index in the lowest ``bits``)."""
    n = flat.shape[0]
    n_p = n // max(n_t, 1)
    order = np.empty(n, np.int64)
    srt = np.empty(n)
    rank = np.empty(n, np.int64)
    _rank_by_keys(flat, keys, (np.uint64(1) << np.uint64(bits)) - np.uint64(1), order, srt,
                  rank)
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


@njit(cache=True, nogil=True, error_model="numpy")
def order_keys(x, a, b, bits, keys):  # type: ignore[no-untyped-def]
    """Sort keys of the columns a..b-1 of x (periods x pools) into ``keys`` (a row per pool):
    the value's bits mapped to an unsigned integer of the same order, their lowest ``bits``
    replaced by the period (NaN: the largest key). Sorted, they put the values in order up to
    values that share all other bits (put right by ``lagged_quantile_sorted``)."""
    xu = x.view(np.uint64)
    low = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    high = ~low
    sign = np.uint64(1) << np.uint64(63)
    for t in range(x.shape[0]):
        row, bits_row, tt = x[t], xu[t], np.uint64(t)
        for p in range(a, b):
            u = bits_row[p]
            if row[p] != row[p]:
                k = high
            elif u & sign:
                k = ~u
            else:
                k = u | sign
            keys[p - a, t] = (k & high) | tt
    return keys


@njit(cache=True, nogil=True, inline="always")
def _set_above(bset, j):  # type: ignore[no-untyped-def]
    """Lowest position >= j set in the bit set (one must be)."""
    wi = j >> 6
    word = bset[wi] & (~np.uint64(0) << np.uint64(j & 63))
    while word == 0:
        wi += 1
        word = bset[wi]
    return wi * 64 + np.int64(trailing_zeros(word))


@njit(cache=True, nogil=True, inline="always")
def _set_below(bset, j):  # type: ignore[no-untyped-def]
    """Highest position <= j set in the bit set (one must be)."""
    wi = j >> 6
    word = bset[wi] & (~np.uint64(0) >> np.uint64(63 - (j & 63)))
    while word == 0:
        wi -= 1
        word = bset[wi]
    return wi * 64 + 63 - np.int64(leading_zeros(word))


@njit(cache=True, nogil=True, inline="always")
def _follow_quantile(rank, srt, nv, inside, lag, w, lo, q, o, c):  # type: ignore[no-untyped-def]
    """Trailing quantile of one series whose value at t has rank ``rank[t]`` among its
    values sorted into ``srt`` (the nv valid ones first) into ``o`` (NaN with fewer than
    ``lo`` values) and the window's number of values into ``c``.

    The selected value is a cursor over the ranks that knows how many window values lie
    below it; a step adds one value, drops one and moves the wanted position by at most one,
    so the cursor steps to the nearest window values (a bit set of the window's ranks finds
    them) instead of searching the window again.
    """
    n_t = rank.shape[0]
    one = np.uint64(1)
    inside[:] = 0
    n = 0
    cur = -1  # rank of the selected value (a window value), -1 while not followed
    below = 0  # window values ranked below cur
    for t in range(n_t):
        i = t - lag  # entering the window
        if i >= 0 and rank[i] < nv:
            r = rank[i]
            inside[r >> 6] |= one << np.uint64(r & 63)
            n += 1
            if r < cur:
                below += 1
        i = t - w - lag  # leaving it
        if i >= 0 and rank[i] < nv:
            r = rank[i]
            inside[r >> 6] &= ~(one << np.uint64(r & 63))
            n -= 1
            if cur < 0:
                pass
            elif n == 0:
                cur, below = -1, 0
            elif r < cur:
                below -= 1
            elif r == cur:
                if n > below:
                    cur = _set_above(inside, cur + 1)
                else:
                    cur, below = _set_below(inside, cur - 1), below - 1
        c[t] = n
        if n < lo:
            o[t] = np.nan
            continue
        want = np.int64(q * (n - 1))
        if cur < 0:  # followed from the first window with enough values
            cur, below = _set_above(inside, 0), 0
        while below < want:
            cur, below = _set_above(inside, cur + 1), below + 1
        while below > want:
            cur, below = _set_below(inside, cur - 1), below - 1
        o[t] = srt[cur]


@njit(cache=True, nogil=True, inline="always")
def _rank_by_keys(vals, keys, low, order, srt, rank):  # type: ignore[no-untyped-def]
    """Number of valid values of ``vals``, their values in order into ``srt`` and each one's
    position there into ``rank``, from the sorted ``order_keys`` of vals (index in the bits
    ``low``): values that shared the other kept bits are put in order by insertion."""
    nv = 0
    for i in range(vals.shape[0]):
        ti = np.int64(keys[i] & low)
        v = vals[ti]
        order[i] = ti
        srt[i] = v
        if v == v:
            nv += 1
    for i in range(1, nv):
        v, ti = srt[i], order[i]
        k = i - 1
        while k >= 0 and srt[k] > v:
            srt[k + 1] = srt[k]
            order[k + 1] = order[k]
            k -= 1
        srt[k + 1] = v
        order[k + 1] = ti
    for i in range(vals.shape[0]):
        rank[order[i]] = i
    return nv


@njit(cache=True, nogil=True, error_model="numpy")
def lagged_quantile_sorted(x, a, keys, bits, lag, w, minp, q, out, count):  # type: ignore[no-untyped-def]
    """As ``lagged_quantile`` for the columns a.. of x (periods x pools) whose sorted
    ``order_keys`` are the rows of ``keys``: row p - a of ``out`` and ``count`` (pools x
    periods) gets pool p's trailing quantile and number of values."""
    n_t = x.shape[0]
    low = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    order = np.empty(n_t, np.int64)
    srt = np.empty(n_t)
    rank = np.empty(n_t, np.int64)
    inside = np.zeros((n_t + 63) // 64, np.uint64)  # bit set of the window's ranks
    col = np.empty(n_t)
    lo = max(minp, 1)
    for j in range(keys.shape[0]):
        p, kj, o, c = a + j, keys[j], out[j], count[j]
        for i in range(n_t):
            col[i] = x[i, p]
        nv = _rank_by_keys(col, kj, low, order, srt, rank)
        _follow_quantile(rank, srt, nv, inside, lag, w, lo, q, o, c)
    return out, count


@njit(cache=True, nogil=True, inline="always")
def _fmax(a, b):  # type: ignore[no-untyped-def]
    """np.fmax of two floats (the other one where one is NaN; b on a tie)."""
    if b != b:
        return a
    if a != a:
        return b
    return a if a > b else b


@njit(cache=True, nogil=True, error_model="numpy")
def stress_outputs(ratio, net, dev, scol, h, div_worst, out_worst, div_q, flt_q, n_done,
                   qstep, minp, min_div, min_flt, peg_break, stress, onset, cause,
                   div_thr, flt_thr, t0, t1):  # type: ignore[no-untyped-def]
    """The stress label of each (t, pool), t in [t0, t1), from the worst forward moves and the
    trailing quantiles (a row per pool, pool p's at row p qstep; n_done values read).

    A window is labelled where complete (finite worst moves) and scaled (``minp`` values);
    its thresholds are the quantiles floored at ``min_div`` / ``min_flt``. It crosses the
    divergence (flight) threshold where its worst move exceeds it, and a peg break where a
    stable pool's (``scol`` >= 0: its column of ``dev``) deviation exceeds ``peg_break`` in
    it. Writes ``stress`` (1, 0, NaN unlabelled), ``onset`` (first k of a crossing, NaN
    unless stressed), ``cause`` (bits 1 divergence, 2 flight, 4 peg; 0 unlabelled) and the
    thresholds (NaN unlabelled)."""
    n_p = ratio.shape[1]
    for t in range(t0, t1):
        r0, m0, dw, ow = ratio[t], net[t], div_worst[t], out_worst[t]
        st, on, ca, dt, ft = stress[t], onset[t], cause[t], div_thr[t], flt_thr[t]
        for p in range(n_p):
            qi = p * qstep
            d, f = dw[p], ow[p]
            if not (d - d == 0.0 and n_done[qi, t] >= minp):
                st[p], on[p], ca[p], dt[p], ft[p] = np.nan, np.nan, 0, np.nan, np.nan
                continue
            dth = _fmax(div_q[qi, t], min_div)
            fth = _fmax(flt_q[qi, t], min_flt)
            dt[p], ft[p] = dth, fth
            c = 0
            if d > dth:
                c |= 1
            if f > fth:
                c |= 2
            s = scol[p]
            if s >= 0:
                for k in range(1, h + 1):
                    if dev[t + k, s] > peg_break:
                        c |= 4
                        break
            ca[p] = c
            if c == 0:
                st[p], on[p] = 0.0, np.nan
                continue
            st[p] = 1.0
            for k in range(1, h + 1):
                if (abs(ratio[t + k, p] - r0[p]) > dth or -(net[t + k, p] - m0[p]) > fth
                        or (s >= 0 and dev[t + k, s] > peg_break)):
                    on[p] = k
                    break
    return stress, onset, cause, div_thr, flt_thr


@njit(cache=True, nogil=True, error_model="numpy")
def log_moves(lp0, lp1, ltvl, tvl, ratio, net):  # type: ignore[no-untyped-def]
    """Log price ratio lp0 - lp1 into ``ratio`` and log TVL net of the price effect of a 50/50
    position, log TVL (NaN unless TVL > 0) - (lp0 + lp1) / 2, into ``net`` (may be the
    inputs: each cell is read before it is written)."""
    for t in range(lp0.shape[0]):
        a, b, lt, v, r, m = lp0[t], lp1[t], ltvl[t], tvl[t], ratio[t], net[t]
        for p in range(a.shape[0]):
            x, y = a[p], b[p]
            m[p] = (lt[p] if v[p] > 0 else np.nan) - 0.5 * (x + y)
            r[p] = x - y
    return ratio, net


@njit(cache=True, nogil=True, error_model="numpy")
def forward_ratio(num, den, h, mode, scale, out, t0, t1):  # type: ignore[no-untyped-def]
    """Forward labels of rows [t0, t1) from a value h periods later (NaN past the end).

    mode 0: num[t+h] / den[t] where den[t] > 0, else NaN (a trailing sum h later per unit at
    t); 1: sqrt(num[t+h] / h x scale) (annualised volatility from a trailing sum of squares);
    2: constant-product value versus HODL minus 1 at r = (num[t+h] / num[t]) /
    (den[t+h] / den[t]), 2 sqrt(r) / (1 + r) - 1.
    """
    n_t, n_p = out.shape
    for t in range(t0, t1):
        o, u, d = out[t], num[t], den[t]
        if t + h >= n_t:
            for p in range(n_p):
                o[p] = np.nan
            continue
        uh, dh = num[t + h], den[t + h]
        for p in range(n_p):
            if mode == 0:
                o[p] = uh[p] / d[p] if d[p] > 0 else np.nan
            elif mode == 1:
                o[p] = np.sqrt(uh[p] / h * scale)
            else:
                r = (uh[p] / u[p]) / (dh[p] / d[p])
                o[p] = 2.0 * np.sqrt(r) / (1.0 + r) - 1
    return out
