"""Optimal routing as a convex program (Angeris et al. 2022, "Optimal Routing for Constant
Function Market Makers"), solved with cvxpy and CLARABEL.

Variables per directed edge e (pool e trading token a -> b): the post-fee input X_e and the
output Y_e. The network's net flow of token j is psi_j = sum_{e: b_e = j} Y_e -
sum_{e: a_e = j} X_e / gamma_e. The program maximises psi_out subject to psi_in >= -amount,
psi_j >= 0 for every other token, and each edge's trading function:
- constant product: (Ra + X)(Rb - Y) >= Ra Rb. Written with the loss T = Ra (X - Y Ra / Rb)
  as T (1 + X / Ra) >= X^2 (a rotated second-order cone), so that the cone's terms are of the
  size of the trade rather than of the reserves: small trades keep their curvature to solver
  precision.
- weighted: (1 + X / Ra)^wa (1 - Y / Rb)^(1 - wa) >= 1 (a power cone).
Y_e <= cap_e where the real reserves bound the output. Each token's amounts are scaled by its
amount worth the trade, so every variable is of order one.

The program is parametrised (cvxpy DPP) and cached by the network's shape, so a re-solve on
new pool states only refills parameters. The cache holds a lock per program: concurrent
callers (a threaded service) wait for each other instead of sharing parameter values.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sps

from models.routing.network import Network

__all__ = ["solve_convex", "ConvexSolution", "SOLVER"]

SOLVER = "CLARABEL"
_CACHE_SIZE = 64
_KEEP = 1e-7
_CACHE: OrderedDict[tuple[Any, ...], _Program] = OrderedDict()
_CACHE_LOCK = threading.Lock()


@dataclass
class ConvexSolution:
    """Inputs per edge (token a units) and the solver's status."""

    inputs: np.ndarray
    status: str


class _Program:
    """A compiled routing program of one network shape, with its parameters."""

    def __init__(self, n_tok: int, tin: int, tout: int, a: np.ndarray, b: np.ndarray,
                 weighted: np.ndarray, wa: np.ndarray, capped: np.ndarray) -> None:
        n = len(a)
        self.lock = threading.Lock()
        self.x = cp.Variable(n, nonneg=True)
        self.ginv = cp.Parameter(n, nonneg=True)
        cols = np.arange(n)
        ma = sps.csr_matrix((np.ones(n), (a, cols)), shape=(n_tok, n))
        mb = sps.csr_matrix((np.ones(n), (b, cols)), shape=(n_tok, n))
        cons: list[Any] = []
        ys: list[Any] = []
        cpi, wti = np.flatnonzero(~weighted), np.flatnonzero(weighted)
        self.inv_kappa = cp.Parameter(len(cpi), nonneg=True)  # 1 / Ra, scaled
        self.rho = cp.Parameter(len(cpi), nonneg=True)  # Rb / Ra, scaled (the spot rate)
        self.rho_ik = cp.Parameter(len(cpi), nonneg=True)  # rho / Ra
        self.inv_ra = cp.Parameter(len(wti), nonneg=True)
        self.inv_rb = cp.Parameter(len(wti), nonneg=True)
        pieces = []
        if len(cpi):
            xc = self.x[cpi]
            t = cp.Variable(len(cpi), nonneg=True)  # loss x Ra (scaled): of order X^2
            grow = 1 + cp.multiply(self.inv_kappa, xc)
            cons.append(cp.SOC(t + grow, cp.vstack([2 * xc, t - grow]), axis=0))
            ys.append(cp.multiply(self.rho, xc) - cp.multiply(self.rho_ik, t))
            pieces.append(cpi)
        if len(wti):
            y = cp.Variable(len(wti), nonneg=True)
            xw = self.x[wti]
            cons.append(cp.PowCone3D(1 + cp.multiply(self.inv_ra, xw),
                                     1 - cp.multiply(self.inv_rb, y), np.ones(len(wti)),
                                     wa[wti]))
            ys.append(y)
            pieces.append(wti)
        perm = np.concatenate(pieces)
        pmat = sps.csr_matrix((np.ones(n), (perm, np.arange(n))), shape=(n, n))
        yall = pmat @ (cp.hstack(ys) if len(ys) > 1 else ys[0])
        self.cap = cp.Parameter(int(capped.sum()), nonneg=True)
        if capped.any():
            cons.append(yall[np.flatnonzero(capped)] <= self.cap)
        net = mb @ yall - ma @ cp.multiply(self.ginv, self.x)
        cons.append(net[tin] >= -1.0)
        rest = [j for j in range(n_tok) if j not in (tin, tout)]
        if rest:
            cons.append(net[rest] >= 0)
        self.cpi, self.wti, self.capped = cpi, wti, capped
        # a token_in left unspent is worth a hair more than nothing, so input that would buy
        # nothing (pools at their caps) stays unspent instead of stranding at a middle token
        self.problem = cp.Problem(cp.Maximize(net[tout] + _KEEP * net[tin]), cons)


def _key(net: Network, capped: np.ndarray) -> tuple[Any, ...]:
    """Shape of a network: what the compiled program depends on besides parameter values."""
    return (len(net.tokens), net.token_in, net.token_out, net.a.tobytes(), net.b.tobytes(),
            net.weighted.tobytes(), np.round(net.wa, 6).tobytes(), capped.tobytes())


def _program(net: Network, capped: np.ndarray) -> _Program:
    """The cached program of this network's shape (compiled on first use)."""
    key = _key(net, capped)
    with _CACHE_LOCK:
        prog = _CACHE.get(key)
        if prog is not None:
            _CACHE.move_to_end(key)
            return prog
    prog = _Program(len(net.tokens), net.token_in, net.token_out, net.a, net.b,
                    net.weighted, net.wa, capped)
    with _CACHE_LOCK:
        _CACHE[key] = prog
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return prog


def solve_convex(net: Network, amount: float, token_usd: np.ndarray) -> ConvexSolution:
    """Solve the routing program of a network for `amount` of token_in.

    Parameters
    ----------
    net : the trade's network (`build_network`).
    amount : input, token_in units (> 0).
    token_usd : USD price per token of the network (for scaling only).

    Returns
    -------
    ConvexSolution with the input per edge in token a units (clipped at 0; zeros when the
    solver failed) and the cvxpy status.
    """
    scale = amount * token_usd[net.token_in] / token_usd  # per token: its amount worth the trade
    sa, sb = scale[net.a], scale[net.b]
    capped = np.isfinite(net.cap) & (net.cap < net.rb)
    prog = _program(net, capped)
    with prog.lock:
        prog.ginv.value = 1.0 / net.gamma
        c, w = prog.cpi, prog.wti
        prog.inv_kappa.value = sa[c] / net.ra[c]
        prog.rho.value = (net.rb[c] / net.ra[c]) * (sa[c] / sb[c])
        prog.rho_ik.value = prog.rho.value * prog.inv_kappa.value
        prog.inv_ra.value = sa[w] / net.ra[w]
        prog.inv_rb.value = sb[w] / net.rb[w]
        prog.cap.value = (net.cap / sb)[capped]
        try:
            prog.problem.solve(solver=SOLVER)
        except cp.error.SolverError as exc:
            return ConvexSolution(np.zeros(net.n), f"solver_error: {exc}")
        status = str(prog.problem.status)
        x = prog.x.value
    if x is None or status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return ConvexSolution(np.zeros(net.n), status)
    return ConvexSolution(np.maximum(np.asarray(x, float), 0.0) * sa / net.gamma, status)
