"""USD token prices derived through the pool graph to a stablecoin."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import CLOSE, POOL_ID, STABLECOINS, TIMESTAMP, TOKEN0, TOKEN1, TVL_USD

__all__ = ["derive_usd_prices"]


def derive_usd_prices(
    frame: pd.DataFrame, meta: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Token USD price per timestamp (wide: time x token) and the path used for each token.

    Stablecoins are worth 1 USD. A token is priced through the pools that pair it with an
    already priced token, deepest pool (median TVL) first; at each timestamp the first pool
    with a price wins, so a gap in the deepest pool falls back to the next one, never to a
    carried-forward value. ``close`` is the price of token0 in token1.
    """
    times = pd.DatetimeIndex(sorted(frame[TIMESTAMP].unique()))
    close = frame.pivot(index=TIMESTAMP, columns=POOL_ID, values=CLOSE).reindex(times)
    depth = frame.groupby(POOL_ID)[TVL_USD].median()
    m = meta.set_index(POOL_ID)
    tokens = sorted(set(m[TOKEN0]) | set(m[TOKEN1]))
    prices = {t: pd.Series(1.0, index=times) for t in tokens if t in STABLECOINS}
    paths = {t: f"{t}=1 USD (stablecoin)" for t in prices}
    pending = [t for t in tokens if t not in prices]
    while pending:
        progressed = False
        level = set(prices)  # breadth-first: shortest path to a stablecoin, then deepest pool
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
        paths[tok] = "unpriced: no pool path to a stablecoin"
    return pd.DataFrame(prices), paths
