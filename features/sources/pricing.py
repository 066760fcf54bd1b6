"""USD token prices: supplied by the user, or derived through the pool graph to a stablecoin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import (
    CLOSE,
    MISSING,
    POOL_ID,
    PRICE_PATH,
    SOURCE_FILE,
    SOURCE_ROW,
    STABLECOINS,
    TIMESTAMP,
    TOKEN0,
    TOKEN0_PRICE_USD,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
    DataValidationError,
    freq_step,
)
from features.sources.cleaning import CleaningReport, touch
from features.sources.rows import load_rows, parse_times, to_float

__all__ = ["derive_usd_prices", "parse_usd_price", "read_usd_prices", "user_prices",
           "add_usd_prices", "USD_PRICE_HINT"]

USD_PRICE_HINT = ("Supply USD prices with --usd-price TOKEN=VALUE (a constant, repeatable) or "
                  "--usd-prices FILE (CSV with columns timestamp,token,price_usd)")


def parse_usd_price(text: str) -> tuple[str, float]:
    """Parse 'TOKEN=VALUE' (a constant USD price) into (token, price)."""
    token, sep, value = text.partition("=")
    try:
        price = float(value)
    except ValueError:
        price = float("nan")
    if not sep or not token.strip() or not np.isfinite(price) or price <= 0:
        raise DataValidationError(f"--usd-price {text!r}: expected TOKEN=VALUE with a positive "
                                  "USD value, e.g. WETH=1800", field="usd-price",
                                  rule="usd price")
    return token.strip(), price


def read_usd_prices(path: Path, freq: str) -> dict[str, pd.Series]:
    """Per-token USD price series from a CSV of timestamp,token,price_usd.

    Timestamps are floored to the panel frequency (the last row of a period wins); a period
    without a row stays unpriced (no carry-forward).
    """
    raw, _ = load_rows(Path(path))
    absent = [c for c in ("timestamp", "token", "price_usd") if c not in raw.columns]
    if absent:
        raise DataValidationError(f"USD price file lacks column(s) {absent}; expected "
                                  "timestamp,token,price_usd", source=str(path),
                                  field=",".join(absent), rule="required column")
    price = to_float(raw, "price_usd", Path(path))
    bad = ~(price > 0) | np.isinf(price)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(f"USD price {raw['price_usd'].iloc[i]!r} is not positive",
                                  source=str(path), row=i, field="price_usd",
                                  rule="positive price")
    ts = parse_times(raw, "timestamp", Path(path), None).dt.floor(freq_step(freq))
    long = pd.DataFrame({TIMESTAMP: ts, "token": raw["token"].astype(str).str.strip(),
                         "price": price})
    long = long.drop_duplicates([TIMESTAMP, "token"], keep="last")
    return {str(t): g.set_index(TIMESTAMP)["price"] for t, g in long.groupby("token")}


def derive_usd_prices(
    frame: pd.DataFrame, meta: pd.DataFrame,
    given: dict[str, float | pd.Series] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Token USD price per timestamp (wide: time x token) and the path used for each token.

    Stablecoins are worth 1 USD, and tokens in ``given`` (a constant or a series indexed by
    timestamp, USD per token) are worth what the user says. Any other token is priced through
    the pools that pair it with an already priced token, deepest pool (median TVL) first; at
    each timestamp the first pool with a price wins, so a gap in the deepest pool falls back
    to the next one, never to a carried-forward value. ``close`` is token0 in token1.
    """
    times = pd.DatetimeIndex(sorted(frame[TIMESTAMP].unique()))
    close = frame.pivot(index=TIMESTAMP, columns=POOL_ID, values=CLOSE).reindex(times)
    depth = frame.groupby(POOL_ID)[TVL_USD].median()
    m = meta.set_index(POOL_ID)
    tokens = sorted(set(m[TOKEN0]) | set(m[TOKEN1]))
    prices: dict[str, pd.Series] = {}
    paths: dict[str, str] = {}
    for tok, val in (given or {}).items():
        if isinstance(val, pd.Series):
            prices[tok] = val.reindex(times)
            paths[tok] = f"{tok}: user-supplied USD prices ({int(prices[tok].notna().sum())} " \
                         f"of {len(times)} periods)"
        else:
            prices[tok] = pd.Series(float(val), index=times)
            paths[tok] = f"{tok}={float(val):g} USD (user-supplied constant)"
    for t in tokens:
        if t in STABLECOINS and t not in prices:
            prices[t] = pd.Series(1.0, index=times)
            paths[t] = f"{t}=1 USD (stablecoin)"
    pending = [t for t in tokens if t not in prices]
    while pending:
        progressed = False
        level = set(prices)  # breadth-first: shortest path to a priced token, then deepest pool
        for tok in list(pending):
            cands = []
            for pid, r in m.iterrows():
                if pid not in close.columns:
                    continue
                if r[TOKEN0] == tok and r[TOKEN1] in level:
                    cands.append((depth.get(pid, 0.0), pid, r[TOKEN1], False))
                elif r[TOKEN1] == tok and r[TOKEN0] in level:
                    cands.append((depth.get(pid, 0.0), pid, r[TOKEN0], True))
            if not cands:
                continue
            cands.sort(key=lambda c: -c[0])
            series = pd.Series(np.nan, index=times)
            for _, pid, other, inverted in cands:
                c = close[pid]
                via = prices[other] / c if inverted else c * prices[other]
                series = series.fillna(via)
            prices[tok] = series
            best = cands[0]
            paths[tok] = (f"{tok}->{best[2]} via {best[1]}" + (
                f" (fallback: {', '.join(str(c[1]) for c in cands[1:])})" if len(cands) > 1 else "")
                + f"; {paths[best[2]]}")
            pending.remove(tok)
            progressed = True
        if not progressed:
            break
    for tok in pending:
        paths[tok] = "unpriced: no pool path to a stablecoin or a user-supplied price"
    return pd.DataFrame(prices, index=times), paths


def user_prices(constants: list[str] | None, path: Path | None, freq: str
                ) -> dict[str, float | pd.Series]:
    """USD prices the user gives: 'TOKEN=VALUE' constants and a timestamp,token,price_usd CSV."""
    given: dict[str, float | pd.Series] = {}
    if path is not None:
        given.update(read_usd_prices(Path(path), freq))
    for text in constants or []:
        tok, price = parse_usd_price(text)
        given[tok] = price
    return given


def add_usd_prices(frame: pd.DataFrame, meta: pd.DataFrame, report: CleaningReport,
                   strict: bool, given: dict[str, float | pd.Series] | None = None
                   ) -> pd.DataFrame:
    """Fill token USD prices from the export, the user or the pool graph; record the paths.

    Unpriced rows are blanked and flagged missing: the leading ones (before any price path
    exists, ``unpriced_start``, a trim) and later ones (``unpriced``, refused by --strict).
    A pool that cannot be priced at all is an error that says how to supply prices.
    """
    cols = [TOKEN0_PRICE_USD, TOKEN1_PRICE_USD]
    live = frame[~frame[MISSING].to_numpy(bool)]
    if set(cols) <= set(frame.columns) and live[cols].notna().all().all():
        meta[PRICE_PATH] = "from export"
        return frame
    usd, paths = derive_usd_prices(live, meta, given)
    m = meta.set_index(POOL_ID)
    idx = usd.index.get_indexer(pd.DatetimeIndex(frame[TIMESTAMP]))
    arr = usd.to_numpy(float)
    col = {t: i for i, t in enumerate(usd.columns)}
    for out_col, tok_col in ((TOKEN0_PRICE_USD, TOKEN0), (TOKEN1_PRICE_USD, TOKEN1)):
        j = frame[POOL_ID].map(m[tok_col]).map(col).fillna(-1).astype(int).to_numpy()
        ok = (j >= 0) & (idx >= 0)
        vals = np.full(len(frame), np.nan)
        vals[ok] = arr[idx[ok], j[ok]]
        frame[out_col] = vals
    meta[PRICE_PATH] = [f"{paths.get(a, '?')} | {paths.get(b, '?')}"
                        for a, b in zip(meta[TOKEN0], meta[TOKEN1], strict=True)]
    missing = frame[MISSING].to_numpy(bool)
    unpriced = frame[cols].isna().any(axis=1).to_numpy() & ~missing
    for pid in pd.unique(frame.loc[unpriced, POOL_ID]):
        sel = (frame[POOL_ID] == pid).to_numpy()
        g = frame[sel].reset_index(drop=True)
        u = unpriced[sel]
        if u[~missing[sel]].all():
            toks = [m.loc[pid, TOKEN0], m.loc[pid, TOKEN1]]
            raise DataValidationError(
                f"no USD price for pool {pid} ({toks[0]}/{toks[1]}) at any of its timestamps: "
                + "; ".join(f"{t}: {paths.get(t, '?')}" for t in toks) + f". {USD_PRICE_HINT}",
                source=str(g[SOURCE_FILE].iloc[0]) if SOURCE_FILE in g else None, pool=str(pid),
                field=f"{TOKEN0_PRICE_USD},{TOKEN1_PRICE_USD}", rule="unpriced")
        lead = np.cumprod(u).astype(bool)
        touch(report, g, lead, "unpriced_start", str(pid), str(pid), strict)
        touch(report, g, u & ~lead, "unpriced", str(pid), str(pid), strict)
    keep = (TIMESTAMP, POOL_ID, MISSING, SOURCE_FILE, SOURCE_ROW)
    frame.loc[unpriced, [c for c in frame.columns if c not in keep]] = np.nan
    frame[MISSING] = missing | unpriced
    return frame
