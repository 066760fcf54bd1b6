"""Route job: the optimal split of one trade over the latest stored pool state.

Reads the work directory's panel, takes each pool's latest usable row (at or before `--at`
when given) as its state, and routes the trade with `models.routing.route`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from features.sources.store import read_panel
from models.economics.costs import GAS_USD
from models.routing import PoolStates, RouteResult, route

__all__ = ["load_pool_states", "run_route", "summary_rows"]


def load_pool_states(workdir: Path, *, at: str | pd.Timestamp | None = None) -> PoolStates:
    """Pool states of the work directory's stored panel, as of `at` (None: the latest rows)."""
    panel = read_panel(Path(workdir))
    when = None
    if at is not None:
        try:
            when = pd.Timestamp(at)
        except ValueError as exc:
            raise ValueError(f"--at {at!r} is not a date or timestamp ({exc})") from None
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    states = PoolStates.from_panel(panel.frame, panel.meta, at=when)
    if len(states) == 0:
        raise ValueError(f"no pool in {workdir} has a usable state"
                         + (f" at or before {when}" if when is not None else "")
                         + f": {states.skipped}")
    return states


def run_route(workdir: Path, token_in: str, token_out: str, amount: float, *,
              gas_usd: float | None = None, chain_gas: bool = False, max_hops: int = 2,
              chain: str | None = None, at: str | pd.Timestamp | None = None) -> RouteResult:
    """Route `amount` of token_in to token_out over the stored pools' latest state.

    Parameters
    ----------
    workdir : work directory holding the panel.
    token_in, token_out : token symbols.
    amount : amount sold, token_in units.
    gas_usd : flat USD per pool touched; chain_gas : price gas per pool from the chain
        table `costs.GAS_USD` instead (either one makes routing drop pools that do not earn
        their gas).
    max_hops : longest path, pools. chain : chain to trade on (None: chosen by TVL).
    at : state time (None: each pool's latest usable row).
    """
    gas: float | Mapping[str, float] | None = GAS_USD if chain_gas else gas_usd
    states = load_pool_states(workdir, at=at)
    return route(states, token_in, token_out, amount, gas_usd=gas, max_hops=max_hops,
                 chain=chain)


def summary_rows(res: RouteResult) -> list[list[Any]]:
    """Rows (item, value, unit) describing a routed trade, for a printed table."""
    rows: list[list[Any]] = [
        ["amount in", f"{res.amount_in:,.6g}", res.token_in],
        ["amount out", f"{res.amount_out:,.6g}", res.token_out],
        ["best single pool", f"{res.best_single_pool_out:,.6g}",
         f"{res.token_out} via {' > '.join(res.best_single_pool_ids)}"],
        ["saved by routing", f"{res.saved_vs_single:.4%}", "of the trade at mid price"],
        ["effective price", f"{res.effective_price:,.6g}", f"{res.token_out} per {res.token_in}"],
        ["mid price", f"{res.mid_price:,.6g}", f"{res.token_out} per {res.token_in}"],
        ["price impact", f"{res.price_impact:.4%}", "fees included"],
        ["status", res.status, f"{res.method} ({res.solver_status}), chain {res.chain}"]]
    if res.amount_in_used < res.amount_in:
        rows.append(["unspent", f"{res.amount_in - res.amount_in_used:,.6g}",
                     f"{res.token_in}: the pools' reserves are exhausted"])
    if res.amount_out_net is not None:
        rows.append(["gas", f"{res.gas_usd:,.2f}", "USD"])
        rows.append(["amount out net of gas", f"{res.amount_out_net:,.6g}", res.token_out])
    return rows
