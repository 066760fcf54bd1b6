"""Import real pool exports into a validated panel: read, clean, price, reindex, validate.

Formats: Uniswap v3 subgraph (poolDayData/poolHourData JSON or CSV), Uniswap v2 subgraph
(pairDayData/pairHourData), generic tables (``table``, with a column mapping) and demeter
minute files (``demeter-minute``, optionally aggregated to 1h/1d). Every row keeps its file
and row in that file until validation, so an error found after files are combined still
names them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import (
    FEE_TIER,
    MISSING,
    OPTIONAL_COLUMNS,
    POOL_ID,
    REQUIRED_COLUMNS,
    SOURCE_FILE,
    SOURCE_ROW,
    TIMESTAMP,
    DataValidationError,
    Panel,
    check_freq,
    freq_step,
    reindex_panel,
    validate_meta,
    validate_panel,
)
from features.sources.cleaning import CleaningReport, clean_pool
from features.sources.pricing import add_usd_prices, user_prices
from features.sources.rows import load_rows
from features.sources.subgraph import RawPart, read_subgraph_file, read_v2_file
from features.sources.table import TableOptions, read_table_file

__all__ = ["import_exports", "FORMATS", "read_subgraph_file", "read_v2_file", "read_table_file",
           "TableOptions"]

FORMATS = ("uniswap-v3-subgraph", "uniswap-v2-subgraph", "table", "demeter-minute")
SUFFIXES = (".json", ".csv", ".parquet")


def _files(paths: list[Path]) -> tuple[list[Path], Path | None]:
    files, pools_csv = [], None
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"export path {p} does not exist")
        if p.is_dir():
            if (p / "pools.csv").exists():
                pools_csv = p / "pools.csv"
            files += sorted(f for f in p.iterdir()
                            if f.suffix.lower() in SUFFIXES and f.name != "pools.csv")
        elif p.name == "pools.csv":
            pools_csv = p
        else:
            files.append(p)
            if (p.parent / "pools.csv").exists():
                pools_csv = pools_csv or p.parent / "pools.csv"
    if not files:
        raise FileNotFoundError(f"no export files (.json/.csv/.parquet) in {paths}")
    return files, pools_csv


def _read_meta(path: Path, lower: bool) -> pd.DataFrame:
    """Pool metadata CSV, validated; pool ids lower-cased for on-chain formats."""
    raw, _ = load_rows(Path(path))
    if POOL_ID in raw.columns:
        raw[POOL_ID] = raw[POOL_ID].astype(str)
    meta = validate_meta(raw, str(path))
    if lower:
        meta[POOL_ID] = meta[POOL_ID].str.lower()
    return meta


def _infer_freq(ts: pd.Series, path: Path) -> str:
    """The panel frequency nearest above the median spacing of the timestamps."""
    d = ts.sort_values().diff().dropna()
    d = d[d > pd.Timedelta(0)]
    if d.empty:
        raise DataValidationError("cannot infer the frequency from one timestamp; pass --freq",
                                  source=str(path), rule="declared frequency")
    med = pd.Timedelta(d.median())
    for fq in ("1min", "1h"):
        if med <= freq_step(fq):
            return fq
    return "1d"


def _not_future(df: pd.DataFrame, latest: pd.Timestamp, pool: str, freq: str) -> None:
    """Refuse rows stamped after ``latest`` (a bad clock or unit), before they are reindexed."""
    late = (df[TIMESTAMP] > latest).to_numpy()
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise DataValidationError(
            f"{int(late.sum())} timestamp(s) in the future (after {latest:%Y-%m-%d %H:%M} UTC, "
            f"now + one {freq} period), e.g. {df[TIMESTAMP].iloc[i]}",
            source=str(df[SOURCE_FILE].iloc[i]), pool=pool, timestamp=df[TIMESTAMP].iloc[i],
            row=int(df[SOURCE_ROW].iloc[i]), field=TIMESTAMP, rule="not in the future")


def _read(f: Path, fmt: str, opts: TableOptions) -> RawPart:
    if fmt == "uniswap-v3-subgraph":
        return read_subgraph_file(f, opts.date_format)
    if fmt == "uniswap-v2-subgraph":
        return read_v2_file(f, opts.date_format)
    return read_table_file(f, opts)


def _demeter(paths: list[Path], pools_csv: Path | None) -> tuple[list[RawPart], pd.DataFrame]:
    """Demeter minute files as one part per pool (fees and USD prices included)."""
    from features.sources.demeter import read_demeter_minute

    if len(paths) != 1:
        raise DataValidationError("demeter-minute takes one folder (or one file)",
                                  source=", ".join(map(str, paths)), rule="one folder")
    meta_in = _read_meta(pools_csv, lower=True) if pools_csv else None
    frame, meta = read_demeter_minute(Path(paths[0]), meta_in, provenance=True)
    return [RawPart(g.reset_index(drop=True), "1min", True, placeholder_open=False,
                    range_over_trades=True)
            for _, g in frame.groupby(POOL_ID, sort=True)], meta


def import_exports(
    paths: list[Path], fmt: str, *, strict: bool = False, pools_csv: Path | None = None,
    mapping: dict[str, str] | None = None, sep: str = ",", thousands: str | None = None,
    date_format: str | None = None, freq: str | None = None, invert_price: bool = False,
    usd_price: list[str] | None = None, usd_prices: Path | None = None,
    now: pd.Timestamp | None = None,
) -> tuple[Panel, CleaningReport]:
    """Read, clean, price, reindex and validate exports into a panel, with a cleaning report.

    Parameters
    ----------
    paths : export files or folders (a ``pools.csv`` beside them is the metadata)
    fmt : one of FORMATS
    strict : refuse every repair rule (trims are still applied and reported)
    freq : declared frequency '1min' | '1h' | '1d' (else the file's own or inferred); for
        demeter-minute, '1h' or '1d' aggregates the minutes
    usd_price, usd_prices : user USD prices ('TOKEN=VALUE' constants; a CSV of
        timestamp,token,price_usd) for tokens with no pool path to a stablecoin
    now : the present, for refusing future timestamps (default: the clock)
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    declared = check_freq(freq) if freq else None
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    opts = TableOptions(mapping, sep, thousands, date_format, invert_price)
    report = CleaningReport()
    if fmt == "demeter-minute":
        parts_in, meta = _demeter(paths, pools_csv)
        files = [Path(paths[0])]
    else:
        files, found_meta = _files(paths)
        meta_path = Path(pools_csv) if pools_csv else found_meta
        if meta_path is None:
            raise FileNotFoundError("no pools.csv beside the exports; pass --pools-csv")
        meta = _read_meta(meta_path, lower=fmt != "table")
        parts_in = [_read(f, fmt, opts) for f in files]
    fee_of = dict(zip(meta[POOL_ID], meta[FEE_TIER], strict=True))
    parts, freqs, one_price = [], set[str](), []
    for part in parts_in:
        for pid, g in part.frame.groupby(POOL_ID, sort=False):
            pid, g = str(pid), g.reset_index(drop=True)
            src = str(g[SOURCE_FILE].iloc[0])
            if pid not in fee_of:
                raise DataValidationError("pool not in metadata", source=src, pool=pid,
                                          timestamp=g[TIMESTAMP].iloc[0], row=0, field=POOL_ID,
                                          rule="known pool")
            fq: str = (part.freq if fmt == "demeter-minute" and part.freq else
                       declared or part.freq or _infer_freq(g[TIMESTAMP], Path(src)))
            _not_future(g, now + freq_step(fq), pid, fq)
            g = clean_pool(g, pid, fq, fee_of[pid], part.has_fees, src, report, strict,
                           one_price=part.one_price, placeholder_open=part.placeholder_open,
                           range_over_trades=part.range_over_trades)
            freqs.add(fq)
            parts.append(g)
            if part.one_price:
                one_price.append(pid)
    if len(freqs) != 1:
        raise DataValidationError(f"exports mix frequencies {sorted(freqs)}; import them apart",
                                  source=str(paths[0]), rule="one frequency")
    fq = freqs.pop()
    frame = pd.concat(parts, ignore_index=True)
    given = user_prices(usd_price, usd_prices, fq)
    frame = add_usd_prices(frame, meta, report, strict, given)
    info: dict = {"format": fmt, "files": [str(f) for f in files]}
    if fmt == "demeter-minute" and declared and declared != "1min":
        frame, info["partial_periods"] = _aggregate(frame, declared)
        info["resampled_from"] = "1min"
        fq = declared
    frame = reindex_panel(frame, fq)
    src = ", ".join(str(p) for p in paths)
    frame = validate_panel(frame, meta, fq, source=src, latest=now + freq_step(fq))
    frame = frame.drop(columns=[SOURCE_FILE, SOURCE_ROW], errors="ignore")
    if one_price:
        info["one_price_pools"] = sorted(set(one_price))
    if given:
        info["usd_prices_given"] = sorted(given)
    used = meta[meta[POOL_ID].isin(frame[POOL_ID].unique())].reset_index(drop=True)
    return Panel(frame=frame, meta=used, freq=fq, source=src, info=info), report


def _aggregate(frame: pd.DataFrame, freq: str) -> tuple[pd.DataFrame, int]:
    """Minute rows to ``freq`` periods (flows summed, state last), with the number of periods
    that lack some minutes; each period keeps the provenance of its first minute."""
    from features.sources.resample import resample_panel

    out = resample_panel(frame, freq)
    firsts = frame.assign(**{TIMESTAMP: frame[TIMESTAMP].dt.floor(freq_step(freq))}) \
        .groupby([POOL_ID, TIMESTAMP])[[SOURCE_FILE, SOURCE_ROW]].first().reset_index()
    out = out.merge(firsts, on=[POOL_ID, TIMESTAMP], how="left")
    keep = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + [MISSING, SOURCE_FILE, SOURCE_ROW]
    partial = int((out["rows_in_period"] < freq_step(freq) // freq_step("1min")).sum())
    return out[[c for c in keep if c in out.columns]], partial
