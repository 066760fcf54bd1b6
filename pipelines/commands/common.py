"""What every `lpa` command shares: consoles, the --workdir option, error handling, tables."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pipelines.tables import table

__all__ = ["console", "err_console", "STATE", "Workdir", "run", "print_error", "table",
           "print_metrics"]

# wide tables when output is not a terminal (CI logs, files)
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
STATE: dict[str, Any] = {"debug": False}

Workdir = Annotated[
    Path | None,
    typer.Option("--workdir", "-w", envvar="LPA_HOME",
                 help="Work directory (default ./lpa-work, env LPA_HOME)."),
]


def run(fn: Callable[[], Any]) -> Any:
    """Run a command body; user errors become a one-paragraph message and exit code 1."""
    try:
        return fn()
    except typer.Exit:
        raise
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        if STATE["debug"]:
            raise
        print_error(exc)
        raise typer.Exit(code=1) from None


def print_error(exc: BaseException) -> None:
    """Print an error in one paragraph; its text is never read as Rich markup.

    DataValidationError ends in a '[file=..., row=..., rule=...]' suffix that markup
    would swallow as a style tag.
    """
    from rich.text import Text

    msg = Text("error", style="bold red")
    msg.append(f" ({type(exc).__name__}): {exc}")
    err_console.print(msg, soft_wrap=True)
    err_console.print("Re-run with `lpa --debug ...` for the traceback.", style="dim",
                      markup=False)


def print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    """Print the strategy x metric table of a backtest."""
    from pipelines.backtest.metrics import SUMMARY as names

    rows = [[s, *[float(m.get(n, float("nan"))) for n in names]] for s, m in metrics.items()]
    console.print(table("backtest (fractions of starting capital)", ["strategy", *names], rows))
