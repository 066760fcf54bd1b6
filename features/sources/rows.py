"""Raw rows of an export file (subgraph JSON, CSV, Parquet), numbers and times, with provenance.

Every error names the file and, where there is one, the 0-based data row (header excluded;
for a JSON response, the position in the entity list).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.schema import SOURCE_FILE, SOURCE_ROW, DataValidationError

__all__ = ["load_rows", "to_float", "unix_times", "parse_times", "tag_rows"]


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DataValidationError:
    return DataValidationError(
        f"file is not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8",
        source=str(path), rule="readable file")


def _subgraph_rows(doc: Any, path: Path) -> tuple[pd.DataFrame, str]:
    """Rows of a GraphQL response; the subgraph's own error text when it sent one."""
    if isinstance(doc, dict) and doc.get("errors"):
        errs = doc["errors"] if isinstance(doc["errors"], list) else [doc["errors"]]
        text = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                         for e in errs)
        raise DataValidationError(f"the subgraph answered with an error: {text}",
                                  source=str(path), rule="subgraph response")
    data = doc.get("data", doc) if isinstance(doc, dict) else None
    if not isinstance(data, dict) or not data:
        raise DataValidationError(
            "expected a subgraph response {'data': {'<entity>': [...]}}, got "
            + (f"keys {sorted(doc)[:5]}" if isinstance(doc, dict) else type(doc).__name__),
            source=str(path), rule="subgraph layout")
    key = next(iter(data))
    rows = data[key]
    if not isinstance(rows, list):
        raise DataValidationError(f"'{key}' is {type(rows).__name__}, expected a list of rows",
                                  source=str(path), field=key, rule="subgraph layout")
    if not rows:
        raise DataValidationError(
            f"the subgraph returned no rows for '{key}' (empty list): check the pool address "
            "and the time range of the query", source=str(path), field=key,
            rule="subgraph response")
    return pd.DataFrame(rows), key


def load_rows(path: Path, sep: str = ",", thousands: str | None = None
              ) -> tuple[pd.DataFrame, str | None]:
    """Rows of a JSON (subgraph response), CSV or Parquet export, and the JSON entity key."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataValidationError(f"invalid JSON: {exc}", source=str(path),
                                          rule="readable file") from exc
            raw, key = _subgraph_rows(doc, path)
        elif suffix == ".parquet":
            raw, key = pd.read_parquet(path), None
        else:
            raw, key = pd.read_csv(path, sep=sep, thousands=thousands, encoding="utf-8"), None
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError(f"unreadable table: {exc}", source=str(path),
                                  rule="readable file") from None
    if raw.empty:
        raise DataValidationError("the file holds no data rows", source=str(path),
                                  rule="non-empty file")
    return raw.reset_index(drop=True), key


def to_float(raw: pd.DataFrame, col: str, path: Path, field: str | None = None) -> pd.Series:
    """Column as float; a non-empty value that is not a number is an error naming the cell."""
    s = raw[col]
    out = pd.to_numeric(s, errors="coerce").astype(float)
    blank = s.astype(str).str.strip().str.lower().isin(["", "nan", "null", "none"])
    bad = out.isna() & s.notna() & ~blank
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(
            f"value {s.iloc[i]!r} in column '{col}' is not a number (check --sep / --thousands)",
            source=str(path), row=i, field=field or col, rule="numeric value")
    return out


def _as_ns(ts: pd.Series, values: pd.Series, path: Path, col: str) -> pd.Series:
    """Timestamps at ns resolution; a value beyond pandas' range (1677-2262) names its row."""
    lo, hi = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
    out_of = ((ts < lo) | (ts > hi)).to_numpy()
    if out_of.any():
        i = int(np.flatnonzero(out_of)[0])
        raise DataValidationError(
            f"timestamp {str(values.iloc[i])!r} is outside 1677-2262", source=str(path), row=i,
            field=col, rule="timestamp in range")
    try:
        return ts.dt.as_unit("ns")
    except (pd.errors.OutOfBoundsDatetime, OverflowError) as exc:
        raise DataValidationError(f"timestamp out of range: {exc}", source=str(path),
                                  field=col, rule="timestamp in range") from None


def unix_times(raw: pd.DataFrame, col: str, path: Path) -> pd.Series:
    """UTC timestamps from a column of unix seconds."""
    secs = to_float(raw, col, path)
    bad = (secs.isna() | (secs.abs() > 9.2e9)).to_numpy()  # 9.2e9 s ~ year 2262
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = ("empty" if np.isnan(secs.iloc[i]) else "outside 1677-2262 (unix milliseconds "
                "given as seconds?)")
        raise DataValidationError(f"{col} {str(raw[col].iloc[i])!r} is {what}",
                                  source=str(path), row=i, field=col, rule="unix timestamp")
    ts = pd.to_datetime(secs.round().astype("int64"), unit="s", utc=True)
    return _as_ns(ts, raw[col], path, col)


def parse_times(raw: pd.DataFrame, col: str, path: Path, date_format: str | None
                ) -> pd.Series:
    """UTC timestamps from unix seconds or date strings (naive strings are taken as UTC)."""
    t = raw[col]
    if pd.api.types.is_numeric_dtype(t) or (
            date_format is None and pd.to_numeric(t, errors="coerce").notna().all()):
        return unix_times(raw, col, path)
    try:
        parsed = pd.to_datetime(t.astype(str), format=date_format, errors="coerce")
    except (ValueError, TypeError) as exc:  # mixed time zones and the like
        raise DataValidationError(f"cannot parse '{col}': {exc}", source=str(path), field=col,
                                  rule="parseable timestamp") from None
    if parsed.isna().any():
        i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        hint = (f" with format {date_format!r}" if date_format
                else "; pass --date-format, e.g. '%m/%d/%Y %H:%M'")
        raise DataValidationError(f"cannot parse timestamp {t.iloc[i]!r}{hint}",
                                  source=str(path), row=i, field=col, rule="parseable timestamp")
    tz = getattr(parsed.dt, "tz", None)
    if tz is not None and str(tz) != "UTC":
        raise DataValidationError(f"timestamps carry time zone {tz}; the contract is UTC",
                                  source=str(path), row=0, field=col, rule="UTC timestamps")
    ts = parsed.dt.tz_localize("UTC") if tz is None else parsed
    return _as_ns(ts, t, path, col)


def tag_rows(out: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Attach the file and the 0-based data row of every row (kept through the combine)."""
    out[SOURCE_FILE] = str(path)
    out[SOURCE_ROW] = np.arange(len(out), dtype="int64")
    return out
