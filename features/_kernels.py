"""Compiled single-pass kernels over (time x pool) grids: trailing windows, EWMA, groups.

Every kernel walks time in the outer loop and pools in the inner one, so it reads and writes
whole grid rows (the C-order layout) and keeps one running state per pool. Sums accumulate in
float64 whatever the input and output dtypes. Only NaN counts as missing (an infinite value is
summed, as the cumulative-sum formulation it replaces did). The kernels are single-threaded
and release the GIL: partitions of pools run in parallel from the caller (threads or Dask),
never inside a kernel, so concurrent calls are safe.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["SUM", "MEAN", "COUNT", "STD", "ROOT_MEAN", "window_stat", "window_max",
           "window_corr", "ewm_mean", "group_sum", "group_stats", "group_neighbours",
           "listed_max"]

SUM, MEAN, COUNT, STD, ROOT_MEAN = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True, error_model="numpy")
def _add(row, sign, square, s, s2, n):  # type: ignore[no-untyped-def]
    """Add (sign 1) or remove (sign -1) one grid row from the running sums."""
    for p in range(row.shape[0]):
        v = np.float64(row[p])
        ok = v == v
        v = (v * v if square else v) if ok else 0.0
        s[p] += sign * v
        s2[p] += sign * (v * v)
        n[p] += sign if ok else 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def window_stat(x, w, minp, mode, square, scale, out):  # type: ignore[no-untyped-def]
    """Trailing statistic over the last w rows (inclusive) of each column into ``out``.

    mode SUM: scale x sum; MEAN: scale x mean; COUNT: valid values; STD: sample standard
    deviation; ROOT_MEAN: sqrt(max(mean, 0) x scale). ``square`` squares each value first.
    NaN where fewer than ``minp`` valid values (at least one) are in the window (never for
    COUNT).
    """
    n_t, n_p = x.shape
    s = np.zeros(n_p)
    s2 = np.zeros(n_p)
    n = np.zeros(n_p)  # counts in float64: exact, and vectorisable without int64 casts
    lo = max(minp, 1)
    for t in range(n_t):
        _add(x[t], 1, square, s, s2, n)
        if t >= w:
            _add(x[t - w], -1, square, s, s2, n)
            for p in range(n_p):  # an empty window sums to exactly zero, without drift
                if n[p] == 0:
                    s[p] = 0.0
                    s2[p] = 0.0
        o = out[t]
        if mode == COUNT:
            for p in range(n_p):
                o[p] = n[p]
        elif mode == SUM:
            for p in range(n_p):
                o[p] = s[p] * scale if n[p] >= lo else np.nan
        elif mode == MEAN:
            for p in range(n_p):
                o[p] = s[p] / n[p] * scale if n[p] >= lo else np.nan
        elif mode == ROOT_MEAN:
            for p in range(n_p):
                o[p] = np.sqrt(max(s[p] / n[p], 0.0) * scale) if n[p] >= lo else np.nan
        else:
            for p in range(n_p):
                k = n[p]
                m = s[p] / k
                var = (s2[p] / k - m * m) * k / max(k - 1, 1)
                o[p] = (0.0 if k == 1 else np.sqrt(max(var, 0.0))) if k >= lo else np.nan
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def window_max(x, w, out):  # type: ignore[no-untyped-def]
    """Trailing NaN-ignoring max over w rows (NaN only when no value), van Herk / Gil-Werman.

    Rows go in blocks of w. A window ending at t in block k starts in block k - 1 (or at k's
    first row), so it is the max of the backward running max of block k - 1 from its start
    and the forward running max of block k up to t: O(1) per cell whatever w is, with two
    blocks of scratch.
    """
    n_t, n_p = x.shape
    prev = np.empty((w, n_p))
    cur = np.empty((w, n_p))
    fwd = np.empty(n_p)
    for start in range(0, n_t, w):
        end = min(start + w, n_t)
        for p in range(n_p):
            cur[end - 1 - start, p] = x[end - 1, p]
        for t in range(end - 2, start - 1, -1):
            row, c, nxt = x[t], cur[t - start], cur[t + 1 - start]
            for p in range(n_p):
                c[p] = np.fmax(np.float64(row[p]), nxt[p])
        for t in range(start, end):
            row, o = x[t], out[t]
            if t == start:
                for p in range(n_p):
                    fwd[p] = row[p]
            else:
                for p in range(n_p):
                    fwd[p] = np.fmax(np.float64(row[p]), fwd[p])
            if t - w + 1 < start and start > 0:
                b = prev[t + 1 - start]
                for p in range(n_p):
                    o[p] = np.fmax(b[p], fwd[p])
            else:
                for p in range(n_p):
                    o[p] = fwd[p]
        prev, cur = cur, prev
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _add_pair(xr, yr, sign, acc, n):  # type: ignore[no-untyped-def]
    """Add or remove one row of (x, y) pairs present in both; ``yr`` may hold one value."""
    one = yr.shape[0] == 1
    for p in range(xr.shape[0]):
        a = np.float64(xr[p])
        b = np.float64(yr[0] if one else yr[p])
        ok = (a == a) & (b == b)
        a = a if ok else 0.0
        b = b if ok else 0.0
        acc[0, p] += sign * a
        acc[1, p] += sign * b
        acc[2, p] += sign * (a * b)
        acc[3, p] += sign * (a * a)
        acc[4, p] += sign * (b * b)
        n[p] += sign * ok


@njit(cache=True, nogil=True, error_model="numpy")
def window_corr(x, y, w, minp, corr, beta):  # type: ignore[no-untyped-def]
    """Trailing correlation and beta (cov / var(y)) over the rows where both are present.

    ``y`` is (rows x columns) or (rows x 1), one series for every column.
    """
    n_t, n_p = x.shape
    acc = np.zeros((5, n_p))
    n = np.zeros(n_p, np.int64)
    lo = max(minp, 1)
    for t in range(n_t):
        _add_pair(x[t], y[t], 1, acc, n)
        if t >= w:
            _add_pair(x[t - w], y[t - w], -1, acc, n)
        c, be = corr[t], beta[t]
        for p in range(n_p):
            k = n[p]
            if k < lo:
                c[p] = np.nan
                be[p] = np.nan
                continue
            mx, my = acc[0, p] / k, acc[1, p] / k
            cov = acc[2, p] / k - mx * my
            vx = acc[3, p] / k - mx * mx
            vy = acc[4, p] / k - my * my
            c[p] = min(max(cov / np.sqrt(max(vx * vy, 1e-30)), -1.0), 1.0)
            be[p] = cov / vy if vy > 1e-30 else np.nan
    return corr, beta


@njit(cache=True, nogil=True, error_model="numpy")
def ewm_mean(x, alpha, minp, out):  # type: ignore[no-untyped-def]
    """Exponentially weighted mean ignoring NaN, as pandas ``ewm(adjust=True, ignore_na=True)``.

    A missing row repeats the last mean; NaN until ``minp`` values have been seen.
    """
    n_t, n_p = x.shape
    mean = np.full(n_p, np.nan)
    old = np.ones(n_p)
    nobs = np.zeros(n_p, np.int64)
    decay = 1.0 - alpha
    for t in range(n_t):
        for p in range(n_p):
            v = np.float64(x[t, p])
            seen = v == v
            if seen:
                nobs[p] += 1
                m = mean[p]
                if m != m:
                    mean[p] = v
                else:
                    o = old[p] * decay
                    if m != v:  # a constant series stays exactly constant
                        mean[p] = (o * m + v) / (o + 1.0)
                    old[p] = o + 1.0
            out[t, p] = mean[p] if nobs[p] >= minp else np.nan
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def group_sum(x, group, n_groups, out):  # type: ignore[no-untyped-def]
    """Per row, the sum of each group's columns (``group[j]`` the group of column j)."""
    n_t, n_p = x.shape
    for t in range(n_t):
        o, row = out[t], x[t]
        for g in range(n_groups):
            o[g] = 0.0
        for p in range(n_p):
            o[group[p]] += row[p]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def group_stats(x, group, n_groups, total, count, top, second, arg):  # type: ignore[no-untyped-def]
    """Per row: each group's sum and count of valid values, its largest and second largest
    value and the column holding the largest (a column may sit in two groups: ``group`` is
    (columns x 2), -1 for none)."""
    n_t, n_p = x.shape
    for t in range(n_t):
        for g in range(n_groups):
            total[t, g] = 0.0
            count[t, g] = 0.0
            top[t, g] = -np.inf
            second[t, g] = -np.inf
            arg[t, g] = -1
        for p in range(n_p):
            v = np.float64(x[t, p])
            if v != v:
                continue
            for k in range(group.shape[1]):
                g = group[p, k]
                if g < 0 or (k == 1 and g == group[p, 0]):
                    continue
                total[t, g] += v
                count[t, g] += 1.0
                if v > top[t, g]:
                    second[t, g] = top[t, g]
                    top[t, g] = v
                    arg[t, g] = p
                elif v > second[t, g]:
                    second[t, g] = v
    return total, count, top, second, arg


@njit(cache=True, nogil=True, error_model="numpy")
def group_neighbours(x, tok, pair, want_max, out):  # type: ignore[no-untyped-def]
    """Mean (or max) over the other columns that share a token with each column.

    ``tok`` (columns x 2) holds each column's two token numbers and ``pair`` the number of its
    unordered token pair: a column sharing both tokens is one neighbour, not two. NaN where no
    neighbour has a value (and, for the max, where the largest is not finite).
    """
    n_t, n_p = x.shape
    n_tok = 0
    n_pair = 0
    for p in range(n_p):
        n_tok = max(n_tok, tok[p, 0] + 1, tok[p, 1] + 1)
        n_pair = max(n_pair, pair[p] + 1)
    ts, tc, tt = np.empty((1, n_tok)), np.empty((1, n_tok)), np.empty((1, n_tok))
    t2, ta = np.empty((1, n_tok)), np.empty((1, n_tok), np.int64)
    ps, pc, pt = np.empty((1, n_pair)), np.empty((1, n_pair)), np.empty((1, n_pair))
    p2, pa = np.empty((1, n_pair)), np.empty((1, n_pair), np.int64)
    pg = pair.reshape(n_p, 1)
    for t in range(n_t):
        row = x[t:t + 1]
        group_stats(row, tok, n_tok, ts, tc, tt, t2, ta)
        if not want_max:
            group_stats(row, pg, n_pair, ps, pc, pt, p2, pa)
        for p in range(n_p):
            a, b = tok[p, 0], tok[p, 1]
            if want_max:
                best = t2[0, a] if ta[0, a] == p else tt[0, a]
                if b != a:
                    best = max(best, t2[0, b] if ta[0, b] == p else tt[0, b])
                out[t, p] = best if np.isfinite(best) else np.nan
                continue
            v = np.float64(x[t, p])
            own = 1.0 if v == v else 0.0
            tot = ts[0, a] - (v if own else 0.0)
            cnt = tc[0, a] - own
            if b != a:  # pools of the same pair sit in both token groups: count them once
                tot += ts[0, b] - ps[0, pair[p]]
                cnt += tc[0, b] - pc[0, pair[p]]
            out[t, p] = tot / cnt if cnt > 0.5 else np.nan
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def listed_max(x, indptr, indices, out):  # type: ignore[no-untyped-def]
    """Per row, the largest value among each column's listed neighbours
    (``indices[indptr[j]:indptr[j + 1]]``); NaN where that largest is missing or infinite."""
    n_t, n_p = x.shape
    for t in range(n_t):
        row, o = x[t], out[t]
        for j in range(n_p):
            best = -np.inf
            for q in range(indptr[j], indptr[j + 1]):
                v = np.float64(row[indices[q]])
                if v > best:
                    best = v
            o[j] = best if np.isfinite(best) else np.nan
    return out
