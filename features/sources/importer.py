"""Import real pool exports (subgraph JSON/CSV, Uniswap v2 pair data, generic tables)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import (
    CLOSE,
    FEE_TIER,
    FEES_USD,
    HIGH,
    LIQUIDITY,
    LOW,
    MISSING,
    OPEN,
    POOL_ID,
    PRICE_PATH,
    REQUIRED_COLUMNS,
    TIMESTAMP,
    TOKEN0,
    TOKEN0_PRICE_USD,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
    TX_COUNT,
    VOLUME_USD,
    DataValidationError,
    Panel,
    reindex_panel,
    validate_meta,
    validate_panel,
)
from features.sources.cleaning import CleaningReport, clean_pool, touch
from features.sources.pricing import derive_usd_prices

__all__ = ["import_exports", "FORMATS", "read_subgraph_file", "read_v2_file", "read_table_file"]

FORMATS = ("uniswap-v3-subgraph", "uniswap-v2-subgraph", "table")
V3_FIELDS = {"tvlUSD": TVL_USD, "volumeUSD": VOLUME_USD, "feesUSD": FEES_USD,
             "txCount": TX_COUNT, "liquidity": LIQUIDITY}
V2_FIELDS = {"reserveUSD": TVL_USD, "dailyVolumeUSD": VOLUME_USD,
             "hourlyVolumeUSD": VOLUME_USD, "dailyTxns": TX_COUNT, "hourlyTxns": TX_COUNT}


def _load_rows(path: Path) -> tuple[pd.DataFrame, str | None]:
    """Rows of a JSON (subgraph response) or CSV/Parquet export, and the JSON entity key."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataValidationError(f"invalid JSON: {exc}", source=str(path),
                                      rule="readable file") from exc
        data = doc.get("data", doc) if isinstance(doc, dict) else None
        if not isinstance(data, dict) or not data:
            raise DataValidationError("expected a subgraph response {'data': {'<entity>': [...]}}",
                                      source=str(path), rule="subgraph layout")
        key = next(iter(data))
        return pd.DataFrame(data[key]), key
    if suffix == ".parquet":
        return pd.read_parquet(path), None
    return pd.read_csv(path), None


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce").astype(float)


def _unix(df: pd.DataFrame, path: Path) -> tuple[pd.Series, str]:
    """Timestamps (UTC) from subgraph time fields, and the inferred frequency."""
    for col, freq in (("periodStartUnix", "1h"), ("hourStartUnix", "1h"), ("date", "1d")):
        if col in df.columns:
            secs = pd.to_numeric(df[col], errors="coerce")
            if secs.isna().any():
                i = int(np.flatnonzero(secs.isna().to_numpy())[0])
                raise DataValidationError(f"non-numeric {col} {df[col].iloc[i]!r}",
                                          source=str(path), row=i, field=col,
                                          rule="unix timestamp")
            return pd.to_datetime(secs.astype("int64"), unit="s", utc=True), freq
    raise DataValidationError("no time field (periodStartUnix, hourStartUnix or date)",
                              source=str(path), field="date", rule="required column")


def read_subgraph_file(path: Path) -> tuple[pd.DataFrame, str, bool]:
    """One Uniswap v3 poolHourData/poolDayData export -> contract columns, freq, has fees.

    The subgraph's OHLC is ``token0Price`` (token0 per one token1); the contract's price is
    token0 in token1, so prices are inverted (and high/low swap).
    """
    raw, key = _load_rows(path)
    ts, freq = _unix(raw, path)
    if key is not None:
        freq = "1h" if "hour" in key.lower() else "1d"
    out = pd.DataFrame({TIMESTAMP: ts})
    pid = str(raw["pool"].iloc[0]) if "pool" in raw.columns else path.stem.lower()
    out[POOL_ID] = raw["pool_id"].astype(str) if "pool_id" in raw.columns else pid
    if "close" in raw.columns:
        inv = {OPEN: "open", HIGH: "low", LOW: "high", CLOSE: "close"}
        for c, src in inv.items():
            v = _num(raw, src) if src in raw.columns else _num(raw, "close")
            out[c] = np.where(v > 0, 1.0 / v.where(v > 0, 1.0), 0.0)
    elif "token1Price" in raw.columns:
        p = _num(raw, "token1Price")
        for c in (OPEN, HIGH, LOW, CLOSE):
            out[c] = p
    else:
        raise DataValidationError("no price field (close or token1Price)", source=str(path),
                                  field="close", rule="required column")
    for src, dst in V3_FIELDS.items():
        if src in raw.columns:
            out[dst] = _num(raw, src)
    if VOLUME_USD not in out or TVL_USD not in out:
        raise DataValidationError("export lacks volumeUSD or tvlUSD", source=str(path),
                                  field="volumeUSD,tvlUSD", rule="required column")
    return out, freq, FEES_USD in out


def read_v2_file(path: Path) -> tuple[pd.DataFrame, str, bool]:
    """One Uniswap v2 pairHourData/pairDayData export -> contract columns, freq, has fees.

    Price = reserve1 / reserve0 (token0 in token1); open = previous close, high/low = the
    larger/smaller of open and close (the export has no intra-period range).
    """
    raw, key = _load_rows(path)
    ts, freq = _unix(raw, path)
    out = pd.DataFrame({TIMESTAMP: ts})
    pid = next((str(raw[c].iloc[0]) for c in ("pair", "pairAddress", "pool_id") if c in raw),
               path.stem.lower())
    out[POOL_ID] = pid
    for src, dst in V2_FIELDS.items():
        if src in raw.columns:
            out[dst] = _num(raw, src)
    if not {"reserve0", "reserve1"} <= set(raw.columns):
        raise DataValidationError("v2 export lacks reserve0/reserve1", source=str(path),
                                  field="reserve0,reserve1", rule="required column")
    out = out.assign(_r=_num(raw, "reserve1") / _num(raw, "reserve0")).sort_values(TIMESTAMP)
    out[CLOSE] = out.pop("_r")
    out[OPEN] = out[CLOSE].shift(1).fillna(out[CLOSE])
    out[HIGH] = np.fmax(out[OPEN], out[CLOSE])
    out[LOW] = np.fmin(out[OPEN], out[CLOSE])
    return out, freq, False


def read_table_file(path: Path, mapping: dict[str, str] | None, sep: str,
                    thousands: str | None, date_format: str | None
                    ) -> tuple[pd.DataFrame, str | None, bool]:
    """A generic CSV/Parquet with a {contract column: source column} mapping."""
    if path.suffix.lower() == ".parquet":
        raw = pd.read_parquet(path)
    else:
        raw = pd.read_csv(path, sep=sep, thousands=thousands)
    mapping = mapping or {}
    raw = raw.rename(columns={v: k for k, v in mapping.items()})
    if TIMESTAMP not in raw.columns:
        raise DataValidationError(f"no '{TIMESTAMP}' column (map it with --mapping)",
                                  source=str(path), field=TIMESTAMP, rule="required column")
    t = raw[TIMESTAMP]
    if pd.api.types.is_numeric_dtype(t):
        ts = pd.to_datetime(t, unit="s", utc=True)
    else:
        parsed = pd.to_datetime(t.astype(str), format=date_format, errors="coerce", utc=False)
        if parsed.isna().any():
            i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise DataValidationError(f"cannot parse timestamp {t.iloc[i]!r}"
                                      + (f" with format {date_format!r}" if date_format else ""),
                                      source=str(path), row=i, field=TIMESTAMP,
                                      rule="parseable timestamp")
        if getattr(parsed.dt, "tz", None) is not None and str(parsed.dt.tz) != "UTC":
            raise DataValidationError(
                f"timestamps carry time zone {parsed.dt.tz}; the contract is UTC",
                source=str(path), row=0, field=TIMESTAMP, rule="UTC timestamps")
        ts = parsed.dt.tz_localize("UTC") if parsed.dt.tz is None else parsed
    out = raw.copy()
    out[TIMESTAMP] = ts
    if POOL_ID not in out.columns:
        out[POOL_ID] = path.stem
    out[POOL_ID] = out[POOL_ID].astype(str)
    for c in out.columns:
        if c not in (TIMESTAMP, POOL_ID, MISSING):
            out[c] = pd.to_numeric(out[c], errors="coerce")
    return out, None, FEES_USD in out.columns


def _files(paths: list[Path]) -> tuple[list[Path], Path | None]:
    files, pools_csv = [], None
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"export path {p} does not exist")
        if p.is_dir():
            if (p / "pools.csv").exists():
                pools_csv = p / "pools.csv"
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in (".json", ".csv",
                                                                         ".parquet")
                            and f.name != "pools.csv")
        elif p.name == "pools.csv":
            pools_csv = p
        else:
            files.append(p)
            if (p.parent / "pools.csv").exists():
                pools_csv = pools_csv or p.parent / "pools.csv"
    if not files:
        raise FileNotFoundError(f"no export files (.json/.csv/.parquet) in {paths}")
    return files, pools_csv


def import_exports(
    paths: list[Path], fmt: str, *, strict: bool = False, pools_csv: Path | None = None,
    mapping: dict[str, str] | None = None, sep: str = ",", thousands: str | None = None,
    date_format: str | None = None, freq: str | None = None,
) -> tuple[Panel, CleaningReport]:
    """Read, clean, price, reindex and validate exports into a panel, with a cleaning report."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    files, found_meta = _files(paths)
    meta_path = Path(pools_csv) if pools_csv else found_meta
    if meta_path is None:
        raise FileNotFoundError("no pools.csv beside the exports; pass --pools-csv")
    meta = validate_meta(pd.read_csv(meta_path, dtype={POOL_ID: str}), str(meta_path))
    meta[POOL_ID] = meta[POOL_ID].str.lower() if fmt != "table" else meta[POOL_ID]
    fee_of = dict(zip(meta[POOL_ID], meta[FEE_TIER], strict=True))
    report = CleaningReport()
    parts, freqs = [], set()
    for f in files:
        fq: str | None
        if fmt == "uniswap-v3-subgraph":
            df, fq, has_fees = read_subgraph_file(f)
        elif fmt == "uniswap-v2-subgraph":
            df, fq, has_fees = read_v2_file(f)
        else:
            df, fq, has_fees = read_table_file(f, mapping, sep, thousands, date_format)
        for pid, g in df.groupby(POOL_ID, sort=False):
            pid = str(pid)
            if pid not in fee_of:
                raise DataValidationError("pool not in metadata", source=str(f), pool=pid,
                                          timestamp=g[TIMESTAMP].iloc[0], row=0, field=POOL_ID,
                                          rule="known pool")
            fq_pool = freq or fq or _infer_freq(g[TIMESTAMP], f)
            freqs.add(fq_pool)
            g = clean_pool(g.reset_index(drop=True), pid, fq_pool, fee_of[pid], has_fees, str(f),
                           report, strict)
            g.attrs["source"] = str(f)
            parts.append(g)
    if len(freqs) != 1:
        raise DataValidationError(f"exports mix frequencies {sorted(freqs)}; import them apart",
                                  source=str(paths[0]), rule="one frequency")
    fq = freqs.pop()
    frame = pd.concat(parts, ignore_index=True)
    frame = _add_usd_prices(frame, meta, report, strict)
    frame = reindex_panel(frame, fq)
    src = ", ".join(str(p) for p in paths)
    frame = validate_panel(frame, meta, fq, source=src)
    used = meta[meta[POOL_ID].isin(frame[POOL_ID].unique())].reset_index(drop=True)
    return Panel(frame=frame, meta=used, freq=fq, source=src,
                 info={"format": fmt, "files": [str(f) for f in files]}), report


def _infer_freq(ts: pd.Series, path: Path) -> str:
    d = ts.sort_values().diff().dropna()
    if d.empty:
        raise DataValidationError("cannot infer frequency from one row; pass --freq",
                                  source=str(path), rule="declared frequency")
    return "1h" if pd.Timedelta(d.median()) <= pd.Timedelta(hours=1) else "1d"


def _add_usd_prices(frame: pd.DataFrame, meta: pd.DataFrame, report: CleaningReport,
                    strict: bool) -> pd.DataFrame:
    """Fill token USD prices from the export or through the pool graph; record the paths."""
    if {TOKEN0_PRICE_USD, TOKEN1_PRICE_USD} <= set(frame.columns) and frame[
            [TOKEN0_PRICE_USD, TOKEN1_PRICE_USD]].notna().all().all():
        meta[PRICE_PATH] = "from export"
        return frame
    live = frame[~frame[MISSING]] if MISSING in frame.columns else frame
    usd, paths = derive_usd_prices(live, meta)
    m = meta.set_index(POOL_ID)
    t0 = frame[POOL_ID].map(m[TOKEN0])
    t1 = frame[POOL_ID].map(m[TOKEN1])
    idx = usd.index.get_indexer(pd.DatetimeIndex(frame[TIMESTAMP]))
    arr = usd.to_numpy()
    col = {t: i for i, t in enumerate(usd.columns)}

    def lookup(tok: pd.Series) -> np.ndarray:
        j = tok.map(col).fillna(-1).astype(int).to_numpy()
        ok = (j >= 0) & (idx >= 0)
        out = np.full(len(frame), np.nan)
        out[ok] = arr[idx[ok], j[ok]]
        return out

    frame[TOKEN0_PRICE_USD] = lookup(t0)
    frame[TOKEN1_PRICE_USD] = lookup(t1)
    meta[PRICE_PATH] = [f"{paths.get(a, '?')} | {paths.get(b, '?')}"
                        for a, b in zip(meta[TOKEN0], meta[TOKEN1], strict=True)]
    missing = frame[MISSING].to_numpy(bool) if MISSING in frame.columns else np.zeros(
        len(frame), bool)
    unpriced = frame[[TOKEN0_PRICE_USD, TOKEN1_PRICE_USD]].isna().any(axis=1).to_numpy()
    unpriced = unpriced & ~missing
    for pid in frame.loc[unpriced, POOL_ID].unique():
        sel = (frame[POOL_ID] == pid).to_numpy()
        g = frame[sel].reset_index(drop=True)
        touch(report, g, unpriced[sel], "unpriced", str(pid), str(g.attrs.get("source", pid)),
              strict)
    cols = [c for c in frame.columns if c not in (TIMESTAMP, POOL_ID, MISSING)]
    frame.loc[unpriced, cols] = np.nan
    frame[MISSING] = missing | unpriced
    return frame[[c for c in frame.columns if c in REQUIRED_COLUMNS
                  or c in (LIQUIDITY, TX_COUNT, MISSING)]]
