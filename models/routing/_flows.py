"""Exact flows of a planned split, token values at the optimum, and paths through the network."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.routing.network import Network

__all__ = ["Flows", "settle", "best_chain", "mid_rate", "spot_bound", "decompose"]

_DUST = 1e-6  # share of a token's outflow below which a planned input is solver residue


@dataclass
class Flows:
    """Exact amounts per edge after settling a plan, and the token values at the solution.

    inputs, outputs : per edge, token a / token b units. capped : edge at its cap.
    used_in : token_in actually spent. amount_out : token_out received.
    value : marginal value of each token in token_out units (token_out = 1).
    """

    inputs: np.ndarray
    outputs: np.ndarray
    capped: np.ndarray
    used_in: float
    amount_out: float
    value: np.ndarray

    def surplus(self, net: Network) -> np.ndarray:
        """Each edge's gain over trading its input at the marginal values, token_out units."""
        return self.value[net.b] * self.outputs - self.value[net.a] * self.inputs


def settle(net: Network, plan: np.ndarray, amount: float) -> Flows:
    """Exact flows of a planned input per edge, forwarding every token that arrives.

    Tokens are visited in topological order; the planned inputs leaving a token are rescaled
    to spend exactly what reached it (the whole `amount` at token_in), each edge's input is
    clipped at its cap, and outputs come from the exact pool curves. Solver round-off thus
    never creates or strands tokens.
    """
    cap_in = net.cap_input()
    inputs, outputs = np.zeros(net.n), np.zeros(net.n)
    have = np.zeros(len(net.tokens))
    have[net.token_in] = amount
    for j in net.order:
        if j == net.token_out:
            continue
        leave = np.flatnonzero(net.a == j)
        p = np.maximum(plan[leave], 0.0)
        p = np.where(p > _DUST * p.sum(), p, 0.0)  # interior-point residue, not a flow
        want = p.sum()
        if want <= 0 or have[j] <= 0:
            continue
        d = np.minimum(p * (have[j] / want), cap_in[leave])
        inputs[leave] = d
        outputs[leave] = net.out(d) if len(leave) == net.n else _out(net, leave, d)
        np.add.at(have, net.b[leave], outputs[leave])
    _trim(net, inputs, outputs, have)
    capped = (inputs > 0) & (inputs >= cap_in * (1.0 - 1e-9))
    used = float(inputs[net.a == net.token_in].sum())  # what _trim gave back is unspent
    return Flows(inputs, outputs, capped, used, float(have[net.token_out]),
                 _values(net, inputs, capped))


def _trim(net: Network, inputs: np.ndarray, outputs: np.ndarray, have: np.ndarray) -> None:
    """Buy no more of a middle token than its next pools can take (in place).

    Where capped pools leave part of a middle token unsold, the pools feeding it buy
    proportionally less, which leaves their own input unspent upstream (at token_in: unspent
    amount). Visits tokens backwards, so the trimming propagates to token_in.
    """
    for j in net.order[::-1]:
        if j in (net.token_in, net.token_out):
            continue
        spent = inputs[net.a == j].sum()
        extra = have[j] - spent
        feed = np.flatnonzero((net.b == j) & (outputs > 0))
        if extra <= 1e-12 * max(have[j], 1e-300) or len(feed) == 0:
            continue
        keep = outputs[feed] * (1.0 - extra / outputs[feed].sum())
        full = np.zeros(net.n)
        full[feed] = keep
        new_in = np.minimum(net.input_for(full)[feed], inputs[feed])
        np.add.at(have, net.a[feed], inputs[feed] - new_in)
        inputs[feed], outputs[feed] = new_in, keep
        have[j] = spent


def _out(net: Network, edges: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Outputs of a subset of edges."""
    full = np.zeros(net.n)
    full[edges] = d
    return net.out(full)[edges]


def _values(net: Network, inputs: np.ndarray, capped: np.ndarray) -> np.ndarray:
    """Marginal value of each token in token_out units, backwards from token_out = 1.

    A token's value is the best marginal rate onward (through edges used below their cap, else
    any edge at zero size): equal across the used edges at an optimum.
    """
    m = net.marginal(inputs)
    used = (inputs > 0) & ~capped
    value = np.zeros(len(net.tokens))
    value[net.token_out] = 1.0
    for j in net.order[::-1]:
        if j == net.token_out:
            continue
        leave = np.flatnonzero(net.a == j)
        if len(leave) == 0:
            continue
        pick = leave[used[leave]] if used[leave].any() else leave
        value[j] = float(np.max(value[net.b[pick]] * m[pick]))
    return value


def best_chain(net: Network, amount: float) -> tuple[float, list[int]]:
    """Best output through one pool per hop (dynamic programme over the acyclic network).

    Pool outputs increase with their input, so the largest amount reachable at each token,
    forwarded whole through the best next pool, is optimal for a single chain.
    """
    best = np.full(len(net.tokens), -np.inf)
    via = np.full(len(net.tokens), -1)
    best[net.token_in] = amount
    for j in net.order:
        leave = np.flatnonzero(net.a == j)
        if not np.isfinite(best[j]) or len(leave) == 0 or j == net.token_out:
            continue
        d = np.zeros(net.n)
        d[leave] = best[j]
        got = net.out(d)[leave]
        for t in np.unique(net.b[leave]):  # the best pool into each next token
            into = net.b[leave] == t
            k = int(np.argmax(np.where(into, got, -np.inf)))
            if got[k] > best[t]:
                best[t], via[t] = got[k], leave[k]
    chain: list[int] = []
    t = net.token_out
    while t != net.token_in and via[t] >= 0:
        chain.append(int(via[t]))
        t = int(net.a[via[t]])
    return float(max(best[net.token_out], 0.0)), chain[::-1]


def mid_rate(net: Network) -> float:
    """Best fee-free zero-size rate token_out per token_in over the network's paths."""
    return _best_rate(net, net.fee_free_spot())


def spot_bound(net: Network) -> float:
    """Best zero-size rate after fees over the paths: no split of any size gets more per unit
    (every pool's output is concave, at most its zero-size rate times the input)."""
    return _best_rate(net, net.spot())


def _best_rate(net: Network, spot: np.ndarray) -> float:
    """Largest product of per-edge rates along a path token_in -> token_out."""
    rate = np.full(len(net.tokens), 0.0)
    rate[net.token_in] = 1.0
    for j in net.order:
        leave = np.flatnonzero(net.a == j)
        np.maximum.at(rate, net.b[leave], rate[j] * spot[leave])
    return float(rate[net.token_out])


def decompose(net: Network, flows: Flows, max_paths: int = 200) -> list[dict[str, object]]:
    """Split the flows into paths token_in -> ... -> token_out (proportional decomposition).

    What reaches a token is split among the edges leaving it in proportion to their inputs;
    each path carries its share of the input spent and of the output received. Paths are
    listed largest first, at most `max_paths`.
    """
    partial: dict[int, list[tuple[list[int], float, float]]] = {net.token_in: [
        ([], flows.used_in, flows.used_in)]}
    done: list[tuple[list[int], float, float]] = []
    for j in net.order:
        arrived = partial.pop(int(j), [])
        if not arrived:
            continue
        if j == net.token_out:
            done.extend(arrived)
            continue
        leave = np.flatnonzero((net.a == j) & (flows.inputs > 0))
        total_in, total_here = flows.inputs[leave].sum(), sum(p[2] for p in arrived)
        if total_in <= 0 or total_here <= 0:
            continue
        for e in leave:
            share = flows.inputs[e] / total_in
            for edges, origin, here in arrived:
                nxt = (edges + [int(e)], origin * share, flows.outputs[e] * here / total_here)
                partial.setdefault(int(net.b[e]), []).append(nxt)
    done.sort(key=lambda p: -p[1])
    out = []
    for edges, origin, got in done[:max_paths]:
        path = [net.tokens[net.token_in]] + [net.tokens[int(net.b[e])] for e in edges]
        out.append({"path": path, "pool_ids": [str(net.pool_ids[e]) for e in edges],
                    "amount_in": float(origin), "amount_out": float(got)})
    return out
