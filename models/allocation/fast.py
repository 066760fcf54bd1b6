"""The allocator's convex program solved directly by a compiled interior-point method.

Same problem as :class:`models.allocation.problem.ConvexAllocator` (the cvxpy reference):

    maximise  sum_j  fee_lin_j w_j - fee_conc_j (k_j w_j)^2 / (1 + k_j w_j) - lin_j w_j
                     - cost_lin_j |w_j - prev_j| - cost_quad_j (w_j - prev_j)^2
    subject to lo <= w <= hi, sum w <= max_deploy, A w <= token_cap, sum |w - prev| <= max_turnover

Moves are split as w = prev + a - b with a, b >= 0, which makes every constraint linear and
the objective smooth and concave on w >= 0. Pools whose bounds leave no room (pinned) are fixed
and leave the problem; token caps that no free pool touches are checked, not carried. The
iterations (``models.allocation._ipm``: Mehrotra predictor-corrector, Woodbury solves over the
budget, token and turnover rows) cost O(pools + tokens^3) each, a few tens per solve. Pure
function of its inputs: safe to call from any number of threads at once.
"""

from __future__ import annotations

import time

import numpy as np

from models.allocation import _ipm
from models.allocation.problem import ProblemInputs, SolveResult

__all__ = ["solve_fast", "objective"]

_FIXED = 1e-12  # bounds closer than this pin a pool
_LOOSE = 1e-7  # residuals accepted (optimal_inaccurate) when round-off stops the iterations
_SLACK = 1e-9  # how far pinned weights may exceed a cap before the program is infeasible


def objective(w: np.ndarray, x: ProblemInputs) -> float:
    """The program's objective at weights w (per unit of capital, over the horizon)."""
    w = np.asarray(w, float)
    z = x.k * w
    with np.errstate(divide="ignore", invalid="ignore"):
        conc = np.where(z != 0, z * z / (1.0 + z), 0.0)
    d = w - x.prev
    return float(np.sum(x.fee_lin * w - x.fee_conc * conc - x.lin * w - x.cost_lin * np.abs(d)
                        - x.cost_quad * d * d))


def _token_rows(inc: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each free pool's coupling rows (1 + used-token number, -1 padded) and the used tokens."""
    sub = inc[:, free] > 0
    used = np.asarray(sub.any(axis=1), dtype=bool)
    row_of = np.cumsum(used)  # token i -> row 1 + its rank among used tokens
    pool, held = np.nonzero(sub.T)  # ordered by pool
    counts = np.bincount(pool, minlength=int(free.sum()))
    tok = np.full((int(free.sum()), max(int(counts.max(initial=0)), 1)), -1, dtype=np.int64)
    first = np.cumsum(counts) - counts
    tok[pool, np.arange(len(pool)) - first[pool]] = row_of[held]
    return tok, used


def solve_fast(x: ProblemInputs, incidence: np.ndarray, tol: float = 1e-9,
               max_iter: int = 200) -> SolveResult:
    """Solve the allocation program; weights are None (with the reason) unless it converged.

    Parameters
    ----------
    x : the program's coefficients (see :class:`ProblemInputs`), per unit of capital.
    incidence : (tokens x pools) 0/1 matrix, pool j holds token i (for the token caps).
    tol : bound on the primal and dual residuals and on the duality gap relative to
        1 + |objective|, on the scaled problem (coefficients divided by their largest
        magnitude, weights as fractions of capital).
    max_iter : interior-point iterations before giving up.
    """
    t0 = time.perf_counter()
    n = len(x.prev)
    if n == 0:
        return SolveResult(np.zeros(0), "optimal", 0.0)
    vals = {"fee_lin": x.fee_lin, "fee_conc": x.fee_conc, "k": x.k, "lin": x.lin,
            "cost_lin": x.cost_lin, "cost_quad": x.cost_quad, "prev": x.prev, "lo": x.lo,
            "hi": x.hi, "token_cap": x.token_cap}
    arrays = [np.asarray(v, float) for v in vals.values()]
    if not np.isfinite(np.concatenate(arrays)).all():  # one check; name them only on failure
        bad = [name for name, v in zip(vals, arrays, strict=True) if not np.isfinite(v).all()]
        return SolveResult(None, f"non-finite coefficients: {', '.join(bad)}", 0.0)
    if (x.lo < 0).any() or (x.hi < x.lo - _FIXED).any():
        return SolveResult(None, "fast solver: bounds need 0 <= lo <= hi", 0.0)
    inc = np.asarray(incidence, float).reshape(-1, n)
    free = (x.hi - x.lo) > _FIXED
    w = np.where(free, x.prev, x.lo).astype(float)  # pinned pools sit at their bound
    pinned = ~free
    fixed_tok = inc[:, pinned] @ w[pinned]
    tok, used = _token_rows(inc, free)
    h_c = np.concatenate([
        [x.max_deploy - w[pinned].sum() - x.prev[free].sum()],
        (x.token_cap - fixed_tok - inc[:, free] @ x.prev[free])[used],
        [x.max_turnover - np.abs(w[pinned] - x.prev[pinned]).sum()]])
    if (x.token_cap - fixed_tok)[~used].min(initial=0.0) < -_SLACK:
        return SolveResult(None, "fast solver: pinned weights exceed a token cap",
                           time.perf_counter() - t0)
    if not free.any():
        if h_c.min() < -_SLACK:
            return SolveResult(None, "fast solver: pinned weights infeasible",
                               time.perf_counter() - t0)
        return SolveResult(w, "optimal", time.perf_counter() - t0)
    scale = max(float(np.max(np.abs(np.concatenate([x.fee_lin, x.lin, x.cost_lin])))), 1e-12)
    f = free
    out = np.empty(int(f.sum()))
    code, iters, err = _ipm.ipm(
        (x.fee_lin[f] - x.lin[f]) / scale, x.fee_conc[f] / scale, x.k[f].astype(float),
        x.cost_lin[f] / scale, x.cost_quad[f] / scale, x.prev[f].astype(float),
        x.lo[f].astype(float), x.hi[f].astype(float), tok, h_c.astype(float), float(tol),
        _LOOSE, int(max_iter), out)
    secs = time.perf_counter() - t0
    if code == _ipm.FAILED:
        return SolveResult(None, f"fast solver: no convergence in {iters + 1} iterations "
                           f"(error {err:.1e})", secs)
    w[free] = out
    w = np.clip(np.clip(w, x.lo, x.hi), 0.0, None)
    return SolveResult(w, "optimal" if code == _ipm.OPTIMAL else "optimal_inaccurate", secs)
