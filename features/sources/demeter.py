"""Reader of the demeter backtester's minute files (one CSV per pool and UTC day).

File name: ``<Chain>-<pool address>-<YYYY-MM-DD>.csv`` (or demeter's newer
``<chain>-<address>-<date>.minute.csv``). Columns, raw token units::

    timestamp,netAmount0,netAmount1,closeTick,openTick,lowestTick,highestTick,
    inAmount0,inAmount1,currentLiquidity

Rows become panel rows (one per minute, as found: gaps stay gaps, the importer reindexes):

- open/high/low/close: token0 in token1, human units, ``1.0001**tick * 10**(d0 - d1)`` from
  openTick / highestTick / lowestTick / closeTick;
- token USD prices: the stablecoin leg is 1 USD, the other leg is derived through ``close``;
- volume_usd: ``inAmount0 / 10**d0 * token0_usd + inAmount1 / 10**d1 * token1_usd``;
  fees_usd = volume_usd * fee_tier;
- fees_token0 / fees_token1: the pool's fees of the minute in each token (human units),
  ``inAmount / 10**d x fee_tier`` (flows: summed when resampling); a replay holds fees
  earned in each token as that token, as the pool does until they are collected;
- liquidity: ``currentLiquidity`` in raw units; tick: ``closeTick``;
- tvl_usd: not in the files. Approximation: the active liquidity valued as a full-range
  position at the close, ``2 * L_human * sqrt(close)`` token1 units, in USD. Never used for a
  fee share when ``liquidity`` is present.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import (
    CHAIN,
    CLOSE,
    DECIMALS0,
    DECIMALS1,
    FEE_TIER,
    FEES_TOKEN0,
    FEES_TOKEN1,
    FEES_USD,
    HIGH,
    LIQUIDITY,
    LOW,
    OPEN,
    POOL_ID,
    PROTOCOL,
    SOURCE_FILE,
    SOURCE_ROW,
    STABLECOINS,
    TICK,
    TIMESTAMP,
    TOKEN0,
    TOKEN0_PRICE_USD,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
    VOLUME_USD,
    DataValidationError,
    validate_meta,
)

__all__ = ["read_demeter_minute", "demeter_files", "KNOWN_POOLS", "DEMETER_COLUMNS",
           "FEES_TOKEN0", "FEES_TOKEN1"]

DEMETER_COLUMNS = [
    "timestamp", "netAmount0", "netAmount1", "closeTick", "openTick", "lowestTick",
    "highestTick", "inAmount0", "inAmount1", "currentLiquidity",
]
TICK_COLUMNS = {"openTick": OPEN, "highestTick": HIGH, "lowestTick": LOW, "closeTick": CLOSE}
AMOUNT_COLUMNS = ["netAmount0", "netAmount1", "inAmount0", "inAmount1", "currentLiquidity"]
MAX_TICK = 887272
NAME = re.compile(r"^(?P<chain>[A-Za-z0-9_]+)-(?P<pool>0x[0-9a-fA-F]{40})-"
                  r"(?P<day>\d{4}-\d{2}-\d{2})(?:\.minute)?\.csv$")

# Pools whose tokens, fee tier and decimals are known without a metadata file.
KNOWN_POOLS = pd.DataFrame([{
    POOL_ID: "0x45dda9cb7c25131df268515131f647d726f50608", PROTOCOL: "uniswap_v3",
    CHAIN: "polygon", TOKEN0: "USDC", TOKEN1: "WETH", FEE_TIER: 0.0005,
    DECIMALS0: 6, DECIMALS1: 18,
}])


def demeter_files(folder: Path) -> list[tuple[Path, str, str, pd.Timestamp]]:
    """(path, chain, pool address, day) of every demeter minute file in a folder, by pool/day.

    ``folder`` may also be one file. Other files in the folder (a licence, a pools.csv) are
    ignored; a folder with no minute file is an error naming it.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataValidationError("demeter minute path does not exist", source=str(folder),
                                  rule="path exists")
    paths = [folder] if folder.is_file() else sorted(folder.iterdir())
    found = []
    for p in paths:
        m = NAME.match(p.name)
        if m is None:
            if folder.is_file():
                raise DataValidationError(
                    "file name is not <Chain>-<pool address>-<YYYY-MM-DD>.csv",
                    source=str(p), field="file name", rule="demeter file name")
            continue
        found.append((p, m["chain"].lower(), m["pool"].lower(),
                      pd.Timestamp(m["day"], tz="UTC")))
    if not found:
        raise DataValidationError(
            "no demeter minute files (<Chain>-<pool address>-<YYYY-MM-DD>.csv) found",
            source=str(folder), rule="demeter files present")
    return sorted(found, key=lambda f: (f[2], f[3]))


def _pool_meta(pools: dict[str, str], meta: pd.DataFrame | None,
               first_file: dict[str, Path]) -> pd.DataFrame:
    """Metadata rows for the pools found: the user's table first, then the known pools."""
    known = KNOWN_POOLS
    if meta is not None:
        meta = validate_meta(meta.assign(**{POOL_ID: meta[POOL_ID].astype(str).str.lower()}),
                             "metadata")
        known = pd.concat([meta, known[~known[POOL_ID].isin(meta[POOL_ID])]],
                          ignore_index=True)
    rows = []
    for pid, chain in pools.items():
        hit = known[known[POOL_ID] == pid]
        if hit.empty:
            raise DataValidationError(
                "unknown pool: no metadata row (pool_id, protocol, chain, token0, token1, "
                "fee_tier, decimals0, decimals1); pass a metadata table", source=str(
                    first_file[pid]), pool=pid, field=POOL_ID, rule="known pool")
        row = hit.iloc[0].to_dict()
        for col in (DECIMALS0, DECIMALS1):
            if col not in row or pd.isna(row[col]):
                raise DataValidationError(
                    f"metadata lacks {col}: raw token amounts need the token decimals",
                    source=str(first_file[pid]), pool=pid, field=col, rule="decimals")
        if TOKEN0 not in row or not ({row[TOKEN0], row[TOKEN1]} & STABLECOINS):
            raise DataValidationError(
                f"neither {row.get(TOKEN0)} nor {row.get(TOKEN1)} is a stablecoin: USD prices "
                "of a demeter pool are derived through a stablecoin leg",
                source=str(first_file[pid]), pool=pid, field=f"{TOKEN0},{TOKEN1}",
                rule="stablecoin leg")
        row[CHAIN] = row.get(CHAIN) if isinstance(row.get(CHAIN), str) else chain
        rows.append(row)
    out = pd.DataFrame(rows)
    for col in (DECIMALS0, DECIMALS1):
        out[col] = out[col].astype("Int64")
    return validate_meta(out, "metadata")


def _numbers(raw: pd.DataFrame, col: str, path: Path, integer: bool) -> np.ndarray:
    """One column as float64; the first empty or non-numeric cell is an error naming the row."""
    vals = pd.to_numeric(raw[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(vals)
    if integer:
        bad |= np.isfinite(vals) & ((vals % 1 != 0) | (np.abs(vals) > MAX_TICK))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = f"a whole tick within ±{MAX_TICK}" if integer else "a number"
        raise DataValidationError(f"{col} is {raw[col].iloc[i]!r}, expected {what}",
                                  source=str(path), row=i, field=col,
                                  rule="integer tick" if integer else "numeric")
    return vals


def _read_file(path: Path, pid: str, meta: dict) -> pd.DataFrame:
    """One day file -> panel rows of one pool."""
    try:
        raw = pd.read_csv(path, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"unreadable CSV: {exc}", source=str(path),
                                  rule="readable file") from exc
    if list(raw.columns) != DEMETER_COLUMNS:
        missing = [c for c in DEMETER_COLUMNS if c not in raw.columns]
        raise DataValidationError(
            f"bad header {list(raw.columns)}; expected {DEMETER_COLUMNS}"
            + (f" (missing {missing})" if missing else ""),
            source=str(path), row=None, field="header", rule="demeter header")
    ts = pd.to_datetime(raw["timestamp"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    if ts.isna().any():
        i = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise DataValidationError(
            f"timestamp {raw['timestamp'].iloc[i]!r} is not 'YYYY-MM-DD HH:MM:SS'",
            source=str(path), row=i, field="timestamp", rule="parseable timestamp")
    ts = ts.dt.tz_localize("UTC")
    off = (ts.dt.second != 0).to_numpy()
    dup = ts.duplicated().to_numpy()
    for mask, msg, rule in ((off, "timestamp not on a whole minute", "on frequency"),
                            (dup, "duplicate minute", "unique period")):
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise DataValidationError(f"{msg}: {raw['timestamp'].iloc[i]}", source=str(path),
                                      row=i, field="timestamp", rule=rule)
    d0, d1 = int(meta[DECIMALS0]), int(meta[DECIMALS1])
    scale = 10.0 ** (d0 - d1)
    out = pd.DataFrame({POOL_ID: pid, TIMESTAMP: ts.dt.as_unit("ns")})
    ticks = {c: _numbers(raw, c, path, integer=True) for c in TICK_COLUMNS}
    for src, dst in TICK_COLUMNS.items():
        out[dst] = np.power(1.0001, ticks[src]) * scale
    amounts = {c: _numbers(raw, c, path, integer=False) for c in AMOUNT_COLUMNS}
    for col in ("inAmount0", "inAmount1", "currentLiquidity"):
        neg = amounts[col] < 0
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            raise DataValidationError(f"negative {col} {raw[col].iloc[i]!r}", source=str(path),
                                      row=i, field=col, rule="non-negative")
    close = out[CLOSE].to_numpy()
    if meta[TOKEN0] in STABLECOINS:
        p0, p1 = np.ones(len(out)), 1.0 / close
    else:
        p0, p1 = close.copy(), np.ones(len(out))
    out[TOKEN0_PRICE_USD], out[TOKEN1_PRICE_USD] = p0, p1
    in0, in1 = amounts["inAmount0"] / 10.0**d0, amounts["inAmount1"] / 10.0**d1
    fee = float(meta[FEE_TIER])
    out[VOLUME_USD] = in0 * p0 + in1 * p1
    out[FEES_USD] = out[VOLUME_USD] * fee
    out[FEES_TOKEN0], out[FEES_TOKEN1] = in0 * fee, in1 * fee
    liq = amounts["currentLiquidity"]
    # approximation: active liquidity as a full-range position at the close (token1 -> USD)
    out[TVL_USD] = 2.0 * liq / 10.0 ** ((d0 + d1) / 2) * np.sqrt(close) * p1
    out[LIQUIDITY] = liq
    out[TICK] = pd.array(ticks["closeTick"].astype(np.int64), dtype="Int64")
    out[SOURCE_FILE] = str(path)
    out[SOURCE_ROW] = np.arange(len(out))
    return out


def read_demeter_minute(
    folder: Path, meta: pd.DataFrame | None = None, *, start: str | None = None,
    end: str | None = None, provenance: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read demeter minute files into (panel rows in long format, pool metadata).

    Parameters
    ----------
    folder : Path
        Folder of ``<Chain>-<pool>-<YYYY-MM-DD>.csv`` files (or one such file).
    meta : DataFrame, optional
        Pool metadata (pool_id, protocol, chain, token0, token1, fee_tier, decimals0,
        decimals1) overriding the built-in table of known pools.
    start, end : str, optional
        First and last UTC day to read (inclusive); files outside are not opened.
    provenance : bool
        Keep ``_source_file`` / ``_source_row`` columns naming each row's file and row.

    Returns
    -------
    (frame, meta)
        One row per minute found (sorted by pool and time, gaps kept as gaps); prices in
        token1 per token0 (human units), USD columns in USD, ``liquidity`` raw.
    """
    files = demeter_files(folder)
    lo = pd.Timestamp(start, tz="UTC") if start else None
    hi = pd.Timestamp(end, tz="UTC") if end else None
    files = [f for f in files if (lo is None or f[3] >= lo) and (hi is None or f[3] <= hi)]
    if not files:
        raise DataValidationError(f"no demeter minute file between {start} and {end}",
                                  source=str(folder), rule="files in range")
    pools = {f[2]: f[1] for f in files}
    first: dict[str, Path] = {}
    for f in files:
        first.setdefault(f[2], f[0])
    pool_meta = _pool_meta(pools, meta, first)
    by_id = {r[POOL_ID]: r for r in pool_meta.to_dict("records")}
    parts = [_read_file(p, pid, by_id[pid]) for p, _, pid, _ in files]
    frame = pd.concat(parts, ignore_index=True)
    dup = frame.duplicated([POOL_ID, TIMESTAMP]).to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataValidationError(
            f"minute {frame[TIMESTAMP].iloc[i]} is also in an earlier file",
            source=frame[SOURCE_FILE].iloc[i], pool=frame[POOL_ID].iloc[i],
            row=int(frame[SOURCE_ROW].iloc[i]), field=TIMESTAMP, rule="unique period")
    frame = frame.sort_values([POOL_ID, TIMESTAMP], kind="stable").reset_index(drop=True)
    if not provenance:
        frame = frame.drop(columns=[SOURCE_FILE, SOURCE_ROW])
    return frame, pool_meta
