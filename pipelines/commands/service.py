"""`lpa serve` and `lpa recommend`: allocation recommendations over HTTP or in the terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.commands.common import Workdir, console, run, table
from pipelines.config import resolve_workdir

__all__ = ["serve_cmd", "recommend_cmd"]


def serve_cmd(
    workdir: Workdir = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve allocation recommendations over HTTP (FastAPI + uvicorn)."""

    def body() -> None:
        from pipelines.service.app import run_server

        run_server(resolve_workdir(workdir), host=host, port=port)

    run(body)


def recommend_cmd(
    pools: Annotated[str, typer.Option(help="Comma-separated pool ids (default: all).")] = "",
    capital: Annotated[float | None, typer.Option(
        help="Capital to allocate, USD (default: the allocator's).")] = None,
    risk_aversion: Annotated[float, typer.Option(help="Weight of the fee-spread downside "
                                                 "term (0: expected P&L).")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    workdir: Workdir = None,
) -> None:
    """Print an allocation recommendation without a server."""

    def body() -> None:
        from models.allocation import DEFAULT_CAPITAL_USD
        from pipelines.service.recommend import (
            parse_pool_ids,
            recommend_from_workdir,
            recommendation_title,
        )

        resp = recommend_from_workdir(resolve_workdir(workdir), parse_pool_ids(pools),
                                      capital or DEFAULT_CAPITAL_USD, risk_aversion=risk_aversion)
        if as_json:
            typer.echo(resp.model_dump_json(indent=2))
            return
        rows = [[p.pool_id, p.weight, p.move_usd, p.expected_fee_yield, p.p_stress, p.reason]
                for p in resp.pools]
        console.print(table(recommendation_title(resp),
                             ["pool", "weight", "move USD", "fee yield", "P(stress)", "reason"],
                             rows))

    run(body)
