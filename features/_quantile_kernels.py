"""Compiled kernels of the stress label's thresholds: trailing quantiles of the forward worst
values of windows already completed (lagged by the horizon), per pool or pooled over pools.

Only `features.labels` may use them. Each pool's values are ranked once (one sort of integer
keys); a window's ranks are followed as it slides, in a bit set, or a Fenwick tree when pooled.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

__all__ = ["lagged_quantile_pooled", "order_keys", "lagged_quantile_sorted"]


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
def lagged_quantile_pooled(flat, n_t, keys, bits, lag, w, minp, q, out, count):  # type: ignore[no-untyped-def]
    """As :func:`lagged_quantile_sorted`, but over the valid values of every pool together: at
    period t, the q-quantile ("lower") of the (periods x pools) grid ``flat`` (flattened, n_t
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
    """q-quantile ("lower": the int(q (n - 1))-th smallest) of the valid values of each
    pool's series lagged by ``lag`` periods over the trailing w periods (NaN with fewer than
    ``minp`` values), for the columns a.. of x (periods x pools) whose sorted ``order_keys``
    are the rows of ``keys``: row p - a of ``out`` and ``count`` (pools x periods) gets pool
    p's quantile and number of valid values (see ``_follow_quantile``)."""
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
