"""The `lpa` command line: data, features, train, tune, backtest, serve, recommend, demo."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipelines.config import resolve_workdir

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lp-allocator: forecast DeFi pool liquidity needs and allocate LP capital.")
data_app = typer.Typer(no_args_is_help=True, help="Pool data: synthesise, import, validate, info.")
features_app = typer.Typer(no_args_is_help=True, help="Feature tables and forward labels.")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")

console = Console()
err_console = Console(stderr=True)
_STATE: dict[str, Any] = {"debug": False}

Workdir = Annotated[
    Path | None,
    typer.Option("--workdir", "-w", envvar="LPA_HOME",
                 help="Work directory (default ./lpa-work, env LPA_HOME)."),
]


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """lp-allocator command line."""
    _STATE["debug"] = debug


def _run(fn: Callable[[], Any]) -> Any:
    """Run a command body; user errors become a one-paragraph message and exit code 1."""
    try:
        return fn()
    except typer.Exit:
        raise
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        if _STATE["debug"]:
            raise
        kind = type(exc).__name__
        err_console.print(f"[bold red]error[/] ({kind}): {exc}", soft_wrap=True)
        err_console.print("Re-run with `lpa --debug ...` for the traceback.", style="dim")
        raise typer.Exit(code=1) from None


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """Build a rich table from plain rows."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    return t


@data_app.command("synth")
def data_synth(
    workdir: Workdir = None,
    pools: Annotated[int, typer.Option(help="Number of pools.")] = 30,
    days: Annotated[int, typer.Option(help="Days of history.")] = 180,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    freq: Annotated[str, typer.Option(help="Panel frequency: 1h or 1d.")] = "1h",
) -> None:
    """Simulate a seeded market of interconnected pools into the work directory."""

    def body() -> None:
        from features.sources.simulator import simulate_market

        from features.sources.store import write_panel

        wd = resolve_workdir(workdir)
        with console.status(f"simulating {pools} pools x {days} days ({freq})"):
            panel, truth = simulate_market(n_pools=pools, days=days, seed=seed, freq=freq)
            path = write_panel(panel, wd, truth=truth, extra={"seed": seed})
        console.print(f"wrote {len(panel.frame):,} rows for {len(panel.meta)} pools to {path}")

    _run(body)


@data_app.command("import")
def data_import(
    paths: Annotated[list[Path], typer.Argument(help="Export files or folders.")],
    fmt: Annotated[str, typer.Option("--format", help=(
        "uniswap-v3-subgraph | uniswap-v2-subgraph | table"))] = "uniswap-v3-subgraph",
    workdir: Workdir = None,
    strict: Annotated[bool, typer.Option(help="Treat every cleaning rule as an error.")] = False,
    pools_csv: Annotated[Path | None, typer.Option(help="Pool metadata CSV.")] = None,
    mapping: Annotated[str | None, typer.Option(
        help="Column mapping for --format table, JSON {contract: source}.")] = None,
    sep: Annotated[str, typer.Option(help="CSV separator.")] = ",",
    thousands: Annotated[str | None, typer.Option(help="Thousands separator.")] = None,
    date_format: Annotated[str | None, typer.Option(help="strptime date format.")] = None,
    freq: Annotated[str | None, typer.Option(help="Declared frequency 1h/1d (else inferred).")]
    = None,
) -> None:
    """Import real pool exports, clean them by explicit rules, validate and store the panel."""

    def body() -> None:
        from features.sources.importer import import_exports

        from features.sources.store import write_panel

        wd = resolve_workdir(workdir)
        panel, report = import_exports(
            list(paths), fmt, strict=strict, pools_csv=pools_csv,
            mapping=json.loads(mapping) if mapping else None, sep=sep, thousands=thousands,
            date_format=date_format, freq=freq,
        )
        console.print(_table("cleaning rules applied", ["rule", "what it does", "rows touched"],
                             [list(r) for r in report.rows()]))
        path = write_panel(panel, wd, extra={"cleaning": report.to_dict()})
        console.print(f"wrote {len(panel.frame):,} rows for {len(panel.meta)} pools "
                      f"({panel.freq}) to {path}")

    _run(body)


@data_app.command("validate")
def data_validate(workdir: Workdir = None) -> None:
    """Re-validate the stored panel against the contract."""

    def body() -> None:
        from features.schema import validate_panel
        from features.sources.store import panel_dir, read_panel

        wd = resolve_workdir(workdir)
        panel = read_panel(wd)
        validate_panel(panel.frame, panel.meta, panel.freq, source=str(panel_dir(wd)))
        console.print(f"[green]valid[/]: {len(panel.frame):,} rows, {len(panel.meta)} pools, "
                      f"frequency {panel.freq}")

    _run(body)


@data_app.command("info")
def data_info(workdir: Workdir = None) -> None:
    """Summarise the stored panel: pools, frequency, date range, gaps."""

    def body() -> None:
        from features.schema import MISSING, POOL_ID, TIMESTAMP, TVL_USD, VOLUME_USD
        from features.sources.store import read_panel

        panel = read_panel(resolve_workdir(workdir))
        f = panel.frame
        console.print(f"{len(panel.meta)} pools, frequency {panel.freq}, "
                      f"{f[TIMESTAMP].min()} -> {f[TIMESTAMP].max()}, {len(f):,} rows, "
                      f"{int(f[MISSING].sum()):,} missing periods")
        g = f.groupby(POOL_ID)
        summary = panel.meta.set_index(POOL_ID).join(
            g.agg(rows=(TIMESTAMP, "size"), gaps=(MISSING, "sum"),
                  tvl=(TVL_USD, "median"), volume=(VOLUME_USD, "median")))
        rows = [[pid, r["protocol"], f"{r['token0']}/{r['token1']}", r["fee_tier"], int(r["rows"]),
                 int(r["gaps"]), float(r["tvl"]), float(r["volume"])]
                for pid, r in summary.iterrows()]
        console.print(_table("pools", ["pool", "protocol", "pair", "fee", "rows", "gaps",
                                       "median TVL USD", "median volume USD"], rows))

    _run(body)


def main() -> None:
    """Entry point for `python -m pipelines.cli`."""
    app(prog_name="lpa")


if __name__ == "__main__":
    main()
