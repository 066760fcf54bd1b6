"""The `lpa` command line: data, features, train, tune, backtest, serve, recommend, demo."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.commands.analysis import replay_cmd, route_cmd
from pipelines.commands.backtest import backtest_cmd, demo_cmd
from pipelines.commands.common import STATE
from pipelines.commands.data import data_app, features_app
from pipelines.commands.service import recommend_cmd, serve_cmd
from pipelines.commands.training import train_cmd, tune_cmd

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lp-allocator: forecast DeFi pool liquidity needs and allocate LP capital.")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.command("train")(train_cmd)
app.command("tune")(tune_cmd)
app.command("backtest")(backtest_cmd)
app.command("serve")(serve_cmd)
app.command("recommend")(recommend_cmd)
app.command("demo")(demo_cmd)
app.command("replay")(replay_cmd)
app.command("route")(route_cmd)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """lp-allocator command line."""
    STATE["debug"] = debug


def main() -> None:
    """Entry point for `python -m pipelines.cli`."""
    app(prog_name="lpa")


if __name__ == "__main__":
    main()
