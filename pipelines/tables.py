"""Plain rows to rich tables, as the command line and the demo print them."""

from __future__ import annotations

from typing import Any

from rich.table import Table

__all__ = ["table"]


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A rich table of rows; floats shown with four significant digits."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    return t
