"""The error raised for pool data that breaks the contract."""

from __future__ import annotations

from typing import Any

__all__ = ["DataValidationError"]


class DataValidationError(ValueError):
    """Pool data that breaks the contract, with where and which rule."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        pool: str | None = None,
        timestamp: Any = None,
        row: int | None = None,
        field: str | None = None,
        rule: str | None = None,
    ) -> None:
        self.source, self.pool, self.timestamp = source, pool, timestamp
        self.row, self.field, self.rule = row, field, rule
        where = [
            f"{k}={v}"
            for k, v in (
                ("file", source), ("pool", pool), ("timestamp", timestamp), ("row", row),
                ("field", field), ("rule", rule),
            )
            if v is not None
        ]
        super().__init__(f"{message} [{', '.join(where)}]" if where else message)
