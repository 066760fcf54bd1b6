"""Compiled primal-dual interior-point iterations of the allocation program (see fast.py).

Variables per pool: the move d = w - prev and u >= |d|. Constraints G (d, u) + s = h, s >= 0,
stored flat: rows r * n + j (r = 0..3) are pool j's own (-d - u <= 0, d - u <= 0,
-d <= prev - lo, d <= hi - prev); rows 4 n + i are the m coupling rows: budget (i = 0) and
token caps (i = ``tok[j, q]``) on d, then turnover on u (i = m - 1). The objective minimised is

    sum_j -lin_j w_j + conc_j (k_j w_j)^2 / (1 + k_j w_j) + cl_j u_j + cq_j d_j^2.

Each Newton system eliminates u pool by pool (the turnover row by Sherman-Morrison), which
leaves a diagonal plus rank-m matrix in d, solved with the Woodbury identity (an m x m
Cholesky factor), then two steps of iterative refinement against the full system. Eliminating
u first keeps the solve stable when a pool's u is free (no linear cost, turnover slack), where
its barrier curvature vanishes. Written as plain loops (quick to compile); no state outlives a
call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["ipm", "OPTIMAL", "INACCURATE", "FAILED"]

OPTIMAL, INACCURATE, FAILED = 0, 1, 2
_TAU = 0.995  # fraction of the way to the boundary a step may go

_jit = njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _rows(dd, du, tok, out):  # type: ignore[no-untyped-def]
    """out = G (dd, du): every constraint row's value."""
    n = dd.shape[0]
    m = out.shape[0] - 4 * n
    for i in range(m):
        out[4 * n + i] = 0.0
    for j in range(n):
        d = dd[j]
        out[j] = -d - du[j]
        out[n + j] = d - du[j]
        out[2 * n + j] = -d
        out[3 * n + j] = d
        out[4 * n] += d
        for q in range(tok.shape[1]):
            r = tok[j, q]
            if r > 0:
                out[4 * n + r] += d
        out[4 * n + m - 1] += du[j]


@_jit
def _transposed(v, tok, n, out_d, out_u):  # type: ignore[no-untyped-def]
    """(out_d, out_u) = G^T v."""
    m = v.shape[0] - 4 * n
    for j in range(n):
        e = v[4 * n]
        for q in range(tok.shape[1]):
            r = tok[j, q]
            if r > 0:
                e += v[4 * n + r]
        out_d[j] = -v[j] + v[n + j] - v[2 * n + j] + v[3 * n + j] + e
        out_u[j] = -v[j] - v[n + j] + v[4 * n + m - 1]


@_jit
def _factor(hh, wgt, tok, piv, mat):  # type: ignore[no-untyped-def]
    """Per pool (piv rows): Schur diagonal sigma, t = K_du / K_uu, 1 / K_uu; piv[3, 0] = rho;
    and in ``mat`` the Cholesky factor of I + Om^1/2 V^T Sigma^-1 V Om^1/2, V = [E, t]."""
    n = hh.shape[0]
    m = mat.shape[0]
    inv_sum = 0.0
    for j in range(n):
        w0, w1 = wgt[j], wgt[n + j]
        dlt = w0 + w1
        piv[0, j] = hh[j] + wgt[2 * n + j] + wgt[3 * n + j] + 4.0 * w0 * w1 / dlt
        piv[1, j] = (w0 - w1) / dlt
        piv[2, j] = 1.0 / dlt
        inv_sum += 1.0 / dlt
    wt = wgt[4 * n + m - 1]
    rho = wt / (1.0 + wt * inv_sum)
    piv[3, 0] = rho
    mat[:, :] = 0.0
    for j in range(n):  # V^T Sigma^-1 V: rows 0..m-2 the budget and token rows, m-1 for t
        inv = 1.0 / piv[0, j]
        t = piv[1, j]
        for q1 in range(-1, tok.shape[1]):
            r1 = 0 if q1 < 0 else tok[j, q1]
            if q1 >= 0 and r1 <= 0:
                continue
            for q2 in range(-1, tok.shape[1]):
                r2 = 0 if q2 < 0 else tok[j, q2]
                if q2 >= 0 and r2 <= 0:
                    continue
                mat[r1, r2] += inv
            mat[r1, m - 1] += inv * t
            mat[m - 1, r1] += inv * t
        mat[m - 1, m - 1] += inv * t * t
    for i in range(m):
        oi = np.sqrt(wgt[4 * n + i] if i < m - 1 else rho)
        for q in range(m):
            oq = np.sqrt(wgt[4 * n + q] if q < m - 1 else rho)
            mat[i, q] *= oi * oq
        mat[i, i] += 1.0
    for i in range(m):  # in-place lower Cholesky factor
        for j in range(i + 1):
            s = mat[i, j]
            for q in range(j):
                s -= mat[i, q] * mat[j, q]
            if i == j:
                if not s > 0.0:
                    return False
                mat[i, i] = np.sqrt(s)
            else:
                mat[i, j] = s / mat[j, j]
    return True


@_jit
def _solve_once(rd, ru, piv, wgt, low, tok, dd, du, tmp):  # type: ignore[no-untyped-def]
    """(dd, du) = K \\ (rd, ru): eliminate u, Woodbury in d, back-substitute u."""
    n = rd.shape[0]
    m = low.shape[0]
    rho = piv[3, 0]
    acc = 0.0
    for j in range(n):
        acc += ru[j] * piv[2, j]
    for j in range(n):  # reduced right-hand side, then Sigma^-1 of it
        dd[j] = (rd[j] - piv[1, j] * ru[j] + piv[1, j] * rho * acc) / piv[0, j]
    for i in range(m):
        tmp[i] = 0.0
    for j in range(n):  # V^T y
        tmp[0] += dd[j]
        for q in range(tok.shape[1]):
            r = tok[j, q]
            if r > 0:
                tmp[r] += dd[j]
        tmp[m - 1] += piv[1, j] * dd[j]
    for i in range(m):
        tmp[i] *= np.sqrt(wgt[4 * n + i] if i < m - 1 else rho)
    for i in range(m):  # forward then backward substitution with the Cholesky factor
        for q in range(i):
            tmp[i] -= low[i, q] * tmp[q]
        tmp[i] /= low[i, i]
    for i in range(m - 1, -1, -1):
        for q in range(i + 1, m):
            tmp[i] -= low[q, i] * tmp[q]
        tmp[i] /= low[i, i]
    for i in range(m):
        tmp[i] *= np.sqrt(wgt[4 * n + i] if i < m - 1 else rho)
    for j in range(n):
        e = tmp[0]
        for q in range(tok.shape[1]):
            r = tok[j, q]
            if r > 0:
                e += tmp[r]
        dd[j] -= (e + piv[1, j] * tmp[m - 1]) / piv[0, j]
    acc = 0.0
    for j in range(n):  # u from d: K_uu^-1 (ru - K_du dd), K_uu by Sherman-Morrison
        du[j] = ru[j] * piv[2, j] - piv[1, j] * dd[j]
        acc += du[j]
    for j in range(n):
        du[j] -= piv[2, j] * rho * acc


@_jit
def _newton(rd, ru, hh, piv, wgt, low, tok, dd, du, work):  # type: ignore[no-untyped-def]
    """Newton solve with two steps of iterative refinement (``work``: scratch rows)."""
    n = rd.shape[0]
    cd, cu, kd, ku, tmp_v = work[0, :n], work[1, :n], work[2, :n], work[3, :n], work[4]
    tmp = work[5]
    _solve_once(rd, ru, piv, wgt, low, tok, dd, du, tmp)
    for _ in range(2):
        _rows(dd, du, tok, tmp_v)
        for i in range(tmp_v.shape[0]):
            tmp_v[i] *= wgt[i]
        _transposed(tmp_v, tok, n, kd, ku)
        for j in range(n):
            kd[j] = rd[j] - kd[j] - hh[j] * dd[j]
            ku[j] = ru[j] - ku[j]
        _solve_once(kd, ku, piv, wgt, low, tok, cd, cu, tmp)
        for j in range(n):
            dd[j] += cd[j]
            du[j] += cu[j]


@_jit
def _max_step(v, dv, frac):  # type: ignore[no-untyped-def]
    step = 1.0
    for i in range(v.shape[0]):
        if dv[i] < 0.0:
            step = min(step, -frac * v[i] / dv[i])
    return step


@_jit
def ipm(lin, conc, k, cl, cq, prev, lo, hi, tok, h_c, tol, loose, max_iter, w_out):  # type: ignore[no-untyped-def]  # noqa: E501
    """Solve; w_out receives the weights. Returns (status, iterations, error)."""
    n = prev.shape[0]
    m = h_c.shape[0]
    nc = 4 * n + m
    dd, du = np.empty(n), np.empty(n)
    h = np.empty(nc)
    s, z = np.empty(nc), np.ones(nc)
    for j in range(n):  # start strictly inside every pool's own rows, near the current weight
        span = hi[j] - lo[j]
        w0 = min(max(prev[j], lo[j] + 0.1 * span), hi[j] - 0.1 * span)
        dd[j] = w0 - prev[j]
        du[j] = abs(dd[j]) + 0.2 * span + 2e-3
        h[j], h[n + j], h[2 * n + j], h[3 * n + j] = 0.0, 0.0, prev[j] - lo[j], hi[j] - prev[j]
    for i in range(m):
        h[4 * n + i] = h_c[i]
    gx = np.empty(nc)
    _rows(dd, du, tok, gx)
    for i in range(nc):
        s[i] = h[i] - gx[i] if i < 4 * n else max(h[i] - gx[i], 1.0)
    g, hh = np.empty(n), np.empty(n)
    rd_d, rd_u, rp = np.empty(n), np.empty(n), np.empty(nc)
    wgt, piv = np.empty(nc), np.empty((4, n))
    mat = np.empty((m, m))
    work = np.empty((6, nc))
    ra, rb, sd, su = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    rc, v, ds, dz = np.empty(nc), np.empty(nc), np.empty(nc), np.empty(nc)
    aff_s, aff_z = np.empty(nc), np.empty(nc)
    best = np.inf
    it = 0
    for it in range(max_iter):  # noqa: B007 - the count is returned
        value = 0.0
        for j in range(n):
            d = dd[j]
            w = prev[j] + d
            zz = k[j] * w
            one = 1.0 + zz
            g[j] = -lin[j] + conc[j] * k[j] * zz * (2.0 + zz) / (one * one) + 2.0 * cq[j] * d
            hh[j] = conc[j] * 2.0 * k[j] * k[j] / (one * one * one) + 2.0 * cq[j]
            value += -lin[j] * w + conc[j] * zz * zz / one + cl[j] * du[j] + cq[j] * d * d
        _transposed(z, tok, n, rd_d, rd_u)
        _rows(dd, du, tok, gx)
        res_d, res_p, mu = 0.0, 0.0, 0.0
        for j in range(n):
            rd_d[j] += g[j]
            rd_u[j] += cl[j]
            res_d = max(res_d, abs(rd_d[j]), abs(rd_u[j]))
        for i in range(nc):
            rp[i] = gx[i] + s[i] - h[i]
            res_p = max(res_p, abs(rp[i]))
            mu += s[i] * z[i]
        mu /= nc
        err = max(res_p, res_d, mu * nc / (1.0 + abs(value)))
        if not np.isfinite(err):
            break
        if err < best:
            best = err
            for j in range(n):
                w_out[j] = prev[j] + dd[j]
        if err <= tol or err > 1e6 * best:  # converged, or round-off has taken over
            break
        for i in range(nc):
            wgt[i] = z[i] / s[i]
        if not _factor(hh, wgt, tok, piv, mat):
            break
        step = 1.0
        for phase in range(2):  # 0: affine predictor, 1: Mehrotra's centred corrector
            if phase == 0:
                for i in range(nc):
                    rc[i] = s[i] * z[i]
            else:
                mu_aff = 0.0
                for i in range(nc):
                    mu_aff += (s[i] + step * aff_s[i]) * (z[i] + step * aff_z[i])
                sigma = min(1.0, (mu_aff / nc / mu) ** 3) if mu > 0 else 0.0
                for i in range(nc):
                    rc[i] = s[i] * z[i] + aff_s[i] * aff_z[i] - sigma * mu
            for i in range(nc):
                v[i] = wgt[i] * rp[i] - rc[i] / s[i]
            _transposed(v, tok, n, ra, rb)
            for j in range(n):
                ra[j] = -rd_d[j] - ra[j]
                rb[j] = -rd_u[j] - rb[j]
            _newton(ra, rb, hh, piv, wgt, mat, tok, sd, su, work)
            _rows(sd, su, tok, gx)
            for i in range(nc):
                dz[i] = wgt[i] * (gx[i] + rp[i]) - rc[i] / s[i]
                ds[i] = -(rc[i] + s[i] * dz[i]) / z[i]
            frac = 1.0 if phase == 0 else _TAU
            step = min(_max_step(s, ds, frac), _max_step(z, dz, frac))
            if phase == 0:
                aff_s[:] = ds
                aff_z[:] = dz
        for j in range(n):
            dd[j] += step * sd[j]
            du[j] += step * su[j]
        for i in range(nc):
            s[i] = max(s[i] + step * ds[i], 1e-300)
            z[i] += step * dz[i]
    if best <= tol:
        return OPTIMAL, it, best
    if best <= loose:
        return INACCURATE, it, best
    return FAILED, it, best
