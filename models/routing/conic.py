"""The routing program of `solver.py`, handed to CLARABEL directly in its conic form.

Same variables, scaling, cones and objective as the cvxpy program (the reference, see
`solver.py`); building the matrices here skips cvxpy's per-solve canonicalisation, which
costs several times the solve itself on routing-sized problems.

CLARABEL solves  min q'z  s.t.  A z + s = b,  s in K.  Here z = [X (every edge), T (constant
product edges), Y (weighted edges)] and K = nonnegative orthant x one 3-d second-order cone
per constant-product edge x one 3-d power cone per weighted edge.
"""

from __future__ import annotations

import clarabel  # the solver cvxpy ships with
import numpy as np
import scipy.sparse as sps

from models.routing.network import Network
from models.routing.solver import _KEEP, ConvexSolution

__all__ = ["solve_conic"]


def solve_conic(net: Network, amount: float, token_usd: np.ndarray) -> ConvexSolution:
    """Solve the routing program of a network with CLARABEL directly.

    Parameters and return as `solver.solve_convex`; the status is "optimal",
    "optimal_inaccurate" or CLARABEL's own status name.
    """
    scale = amount * token_usd[net.token_in] / token_usd
    sa, sb = scale[net.a], scale[net.b]
    n, n_tok = net.n, len(net.tokens)
    cpi, wti = np.flatnonzero(~net.weighted), np.flatnonzero(net.weighted)
    nc, nw = len(cpi), len(wti)
    ix, it, iy = np.arange(n), n + np.arange(nc), n + nc + np.arange(nw)  # z positions
    nz = n + nc + nw
    ik = sa[cpi] / net.ra[cpi]  # 1 / Ra, scaled
    rho = (net.rb[cpi] / net.ra[cpi]) * (sa[cpi] / sb[cpi])
    # routing problems are small: dense blocks, one sparse conversion at the end
    ymat = np.zeros((n, nz))  # output Y_e over z: rho X - rho/Ra T, or Y (weighted)
    ymat[cpi, ix[cpi]], ymat[cpi, it], ymat[wti, iy] = rho, -rho * ik, 1.0
    flow = np.zeros((n_tok, nz))  # net flow per token, scaled
    np.add.at(flow, net.b, ymat)
    np.subtract.at(flow, (net.a, ix), 1.0 / net.gamma)
    q = -(flow[net.token_out] + _KEEP * flow[net.token_in])

    capped = np.flatnonzero(np.isfinite(net.cap) & (net.cap < net.rb))
    rest = [j for j in range(n_tok) if j not in (net.token_in, net.token_out)]
    nonneg = np.vstack([-np.eye(nz), -flow[[net.token_in]], -flow[rest], ymat[capped]])
    b_nonneg = np.concatenate([np.zeros(nz), np.ones(1), np.zeros(len(rest)),
                               (net.cap / sb)[capped]])
    # one SOC per constant-product edge: (T + 1 + ik X, 2 X, T - 1 - ik X)
    soc = np.zeros((3 * nc, nz))
    k3 = 3 * np.arange(nc)
    soc[k3, it], soc[k3, ix[cpi]] = -1.0, -ik
    soc[k3 + 1, ix[cpi]] = -2.0
    soc[k3 + 2, it], soc[k3 + 2, ix[cpi]] = -1.0, ik
    b_soc = np.tile([1.0, 0.0, -1.0], nc)
    # one power cone per weighted edge: (1 + X sa / Ra, 1 - Y sb / Rb, 1)
    powc = np.zeros((3 * nw, nz))
    kw = 3 * np.arange(nw)
    powc[kw, ix[wti]] = -sa[wti] / net.ra[wti]
    powc[kw + 1, iy] = sb[wti] / net.rb[wti]
    a_mat = sps.csc_matrix(np.vstack([nonneg, soc, powc]))
    b = np.concatenate([b_nonneg, b_soc, np.ones(3 * nw)])
    n_nonneg = len(b_nonneg)
    cones = [clarabel.NonnegativeConeT(n_nonneg)]
    cones += [clarabel.SecondOrderConeT(3) for _ in range(nc)]
    cones += [clarabel.PowerConeT(float(net.wa[e])) for e in wti]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    solver = clarabel.DefaultSolver(sps.csc_matrix((nz, nz)), q, a_mat, b, cones, settings)
    sol = solver.solve()
    status = str(sol.status)
    named = {"Solved": "optimal", "AlmostSolved": "optimal_inaccurate"}
    if status not in named:
        return ConvexSolution(np.zeros(n), status)
    x = np.maximum(np.asarray(sol.x, float)[:n], 0.0)
    return ConvexSolution(x * sa / net.gamma, named[status])
