"""`lpa replay` and `lpa route`: one LP position replayed, one trade routed on stored pools."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from pipelines.commands.common import Workdir, console, run, table
from pipelines.config import resolve_workdir

__all__ = ["replay_cmd", "route_cmd"]


def replay_cmd(
    pool: Annotated[str, typer.Option(help="Pool id or a unique prefix of it.")],
    capital: Annotated[float, typer.Option(help="Deposit, quote-token units.")] = 10_000.0,
    width: Annotated[float | None, typer.Option(
        help="Range half-width around the first price, quote units (200: price ± 200).")] = None,
    lower: Annotated[float | None, typer.Option(help="Lower bound, quote price.")] = None,
    upper: Annotated[float | None, typer.Option(help="Upper bound, quote price.")] = None,
    start: Annotated[str | None, typer.Option(help="First day or timestamp (UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="Last day (inclusive) or timestamp.")] = None,
    recenter: Annotated[bool, typer.Option(
        "--recenter", help="Re-centre (same width) after a period that closes out of range.")]
    = False,
    quote: Annotated[str | None, typer.Option(
        help="Quote token: symbol, token0 or token1 (default: the stablecoin leg).")] = None,
    entry_swap_fee: Annotated[bool, typer.Option(
        "--entry-swap-fee", help="Pay the fee tier on the half swapped at entry.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    workdir: Workdir = None,
) -> None:
    """Replay one LP position on a stored pool: NAV, fees, IL versus HODL, LVR, time in range."""

    def body() -> None:
        from pipelines.replay import run_replay

        run = run_replay(resolve_workdir(workdir), pool, capital=capital, width=width,
                         lower=lower, upper=upper, start=start, end=end, recenter=recenter,
                         quote=quote, entry_swap_fee=entry_swap_fee)
        r = run.result
        if as_json:
            typer.echo(json.dumps({**r.summary(), "report_dir": str(run.report_dir)},
                                  indent=2, default=str))
            return
        rows: list[list[Any]] = [
            ["final NAV", f"{r.final_nav:,.2f}", r.quote],
            ["fees", f"{r.fees:,.2f}", r.quote],
            ["IL versus HODL", f"{r.il_quote:,.2f}", f"{r.quote} ({r.il:.3%})"],
            ["HODL value", f"{r.hodl:,.2f}", r.quote],
            ["LVR estimate", f"{r.lvr:,.2f}", f"{r.quote} ({r.lvr_fraction:.3%} of capital)"],
            ["time in range", f"{r.time_in_range:.2%}", "of the periods"],
            ["re-centres", r.recentres, f"costs {r.costs:,.2f} {r.quote}"],
            ["rows", r.rows, f"{r.freq}, fee share from {r.fee_share_source}"]]
        console.print(table(f"replay {r.pool_id} ({r.base}/{r.quote}, capital "
                             f"{r.capital:,.0f} {r.quote})", ["", "value", "unit"], rows))
        for note in r.notes:
            console.print(f"note: {note}", markup=False)
        console.print(f"report: {run.report_dir}")

    run(body)


def route_cmd(
    from_token: Annotated[str, typer.Option("--from", help="Token sold (symbol).")],
    to_token: Annotated[str, typer.Option("--to", help="Token bought (symbol).")],
    amount: Annotated[float, typer.Option(help="Amount sold, in units of the --from token.")],
    max_hops: Annotated[int, typer.Option(help="Longest path, in pools.")] = 2,
    chain: Annotated[str | None, typer.Option(
        help="Chain to trade on (default: the one with the most TVL on the route).")] = None,
    gas_usd: Annotated[float | None, typer.Option(
        help="USD of gas per pool touched; pools that do not earn it are left out.")] = None,
    chain_gas: Annotated[bool, typer.Option(
        "--chain-gas", help="Price gas per pool from the per-chain gas table.")] = False,
    at: Annotated[str | None, typer.Option(
        help="Route on the pool state at this date or timestamp (UTC) instead of the latest.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    workdir: Workdir = None,
) -> None:
    """Split a trade optimally across the stored pools and multi-hop paths (latest state)."""

    def body() -> None:
        from pipelines.route import run_route, summary_rows

        res = run_route(resolve_workdir(workdir), from_token, to_token, amount,
                        gas_usd=gas_usd, chain_gas=chain_gas, max_hops=max_hops, chain=chain,
                        at=at)
        if as_json:
            typer.echo(json.dumps(res.to_dict(), indent=2, default=str))
            return
        console.print(table(f"route {res.amount_in:,.6g} {res.token_in} -> {res.token_out}",
                             ["", "value", "unit"], summary_rows(res)))
        console.print(table("splits", ["path", "pools", f"in ({res.token_in})",
                                        f"out ({res.token_out})"],
                             [[" > ".join(s["path"]), ", ".join(s["pool_ids"]),
                               f"{s['amount_in']:,.6g}", f"{s['amount_out']:,.6g}"]
                              for s in res.splits]))

    run(body)
